package tonecode

// Checksums of the frame. Both are computed bit by bit: frames are short and this is not
// on any hot path.

// crc8 is CRC-8 with polynomial x^8+x^2+x+1 (0x07), initial value 0. It guards the
// length bytes, so a false sync is rejected before the decoder reads a bogus payload.
func crc8(data []byte) byte {
	var crc byte
	for _, b := range data {
		crc ^= b
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// crc16Init is the initial value of the CRC-16 (the CCITT-FALSE variant).
const crc16Init = 0xFFFF

// crc16 continues a CRC-16/CCITT-FALSE (polynomial 0x1021, no reflection) over data.
func crc16(crc uint16, data []byte) uint16 {
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
