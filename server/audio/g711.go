package audio

// ITU-T G.711 companding between 16-bit linear PCM and 8-bit codes.
//
// Both laws split the magnitude into 8 segments (a 3-bit exponent) with a 4-bit mantissa
// inside each segment, then invert some bits so that silence is not a run of zero bytes on
// a telephone line: µ-law inverts every bit, A-law inverts the even bits (XOR 0x55).

const (
	// muLawBias is added to the magnitude before encoding so that every segment starts at
	// a power of two, which turns the segment search into "position of the top bit". It is
	// expressed on the 16-bit scale; the encoder works on 14 bits and uses a quarter of it.
	muLawBias = 0x84
	// muLawClip keeps the 14-bit magnitude plus bias inside 13 bits.
	muLawClip = 8159
)

// MuLawEncode converts 16-bit linear PCM to a G.711 µ-law byte.
func MuLawEncode(pcm int16) byte {
	// µ-law is defined on 14-bit samples. The arithmetic shift rounds negative values
	// towards minus infinity, as the reference implementations do, so -1 encodes as the
	// smallest negative code rather than as zero.
	v := int(pcm) >> 2
	mask := byte(0xFF)
	if v < 0 {
		v = -v
		mask = 0x7F
	}
	if v > muLawClip {
		v = muLawClip
	}
	v += muLawBias >> 2

	// v is now in [0x21, 0x1FFF]: segment 0 ends at 0x3F, each later one doubles.
	segment := 0
	for t := v >> 6; t > 0; t >>= 1 {
		segment++
	}
	if segment > 7 {
		return 0x7F ^ mask // the clipped maximum lands just past segment 7
	}
	mantissa := (v >> (segment + 1)) & 0x0F

	return byte(segment<<4|mantissa) ^ mask
}

// MuLawDecode converts a G.711 µ-law byte to 16-bit linear PCM.
func MuLawDecode(code byte) int16 {
	u := ^code
	exponent := int(u>>4) & 0x07
	mantissa := int(u) & 0x0F

	v := ((mantissa<<3)+muLawBias)<<exponent - muLawBias
	if u&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

// ALawEncode converts 16-bit linear PCM to a G.711 A-law byte.
func ALawEncode(pcm int16) byte {
	// A-law works on 13-bit magnitudes; negative values use one's complement so that the
	// two smallest codes sit symmetrically around zero (there is no code for exactly 0).
	v := int(pcm) >> 3
	mask := byte(0xD5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}

	// Segment 0 and 1 share the same step (2); from segment 2 the step doubles each time.
	segment := 0
	for t := v >> 5; t > 0; t >>= 1 {
		segment++
	}
	if segment > 7 {
		return 0x7F ^ mask
	}

	var code byte
	if segment < 2 {
		code = byte(v>>1) & 0x0F
	} else {
		code = byte(v>>segment) & 0x0F
	}
	return (byte(segment<<4) | code) ^ mask
}

// ALawDecode converts a G.711 A-law byte to 16-bit linear PCM.
func ALawDecode(code byte) int16 {
	a := code ^ 0x55
	v := int(a&0x0F) << 4
	segment := int(a&0x70) >> 4

	// Decoded values sit in the middle of their quantisation interval (hence +8 / +0x108).
	switch segment {
	case 0:
		v += 8
	case 1:
		v += 0x108
	default:
		v = (v + 0x108) << (segment - 1)
	}

	if a&0x80 != 0 {
		return int16(v)
	}
	return int16(-v)
}
