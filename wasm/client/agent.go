//go:build js && wasm

package client

import (
	"context"
	"math/rand/v2"
	"strconv"

	"github.com/voxgate/voxgate/wasm/cartesia"
)

// AgentCall is one call to a Cartesia agent over /cartesia/agents/stream/{agent_id}.
type AgentCall struct {
	s        *socket
	streamID string
}

// CallAgent opens a call (after checking the agent token) and sends its start event. The
// stream id is chosen here, so it is known before the agent's ack.
func (c *Client) CallAgent(ctx context.Context, agentID string,
	opts cartesia.AgentStartOptions) (*AgentCall, error) {
	if err := cartesia.CheckAgentID(agentID); err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantAgent, Message: err.Error()}
	}
	streamID := "vg-" + strconv.FormatUint(rand.Uint64(), 36)
	start, err := cartesia.AgentStartMessage(streamID, opts)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantAgent, Message: err.Error()}
	}

	s, err := c.dial(ctx, GrantAgent, "/cartesia/agents/stream/"+agentID, "", nil)
	if err != nil {
		return nil, err
	}
	call := &AgentCall{s: s, streamID: streamID}
	if err := s.send(false, start); err != nil {
		s.Close(closeNormal, "")
		return nil, err
	}
	return call, nil
}

// StreamID returns the call's stream id.
func (a *AgentCall) StreamID() string { return a.streamID }

// SendAudio sends caller audio in the call's input format (a media_input event, base64).
func (a *AgentCall) SendAudio(audio []byte) error {
	return a.s.send(false, cartesia.AgentMediaMessage(a.streamID, audio))
}

// DTMF sends one keypad digit: 0-9, * or #.
func (a *AgentCall) DTMF(digit string) error {
	msg, err := cartesia.AgentDTMFMessage(a.streamID, digit)
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Grant: GrantAgent, Message: err.Error()}
	}
	return a.s.send(false, msg)
}

// Custom sends a custom event with metadata, a JSON object.
func (a *AgentCall) Custom(metadata []byte) error {
	msg, err := cartesia.AgentCustomMessage(a.streamID, metadata)
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Grant: GrantAgent, Message: err.Error()}
	}
	return a.s.send(false, msg)
}

// Hangup ends the call: the socket is closed with 1000 "call ended by user".
func (a *AgentCall) Hangup() {
	a.s.Close(closeNormal, "call ended by user")
}

// Next returns the agent's next event: ack, media_output (decoded audio), clear, dtmf,
// custom, transfer_call, or an event Cartesia adds. An error event ends the call's events
// with an *Error of code upstream_error; after a normal close Next returns io.EOF.
func (a *AgentCall) Next(ctx context.Context) (cartesia.AgentEvent, error) {
	for {
		m, err := a.s.next(ctx)
		if err != nil {
			return cartesia.AgentEvent{}, err
		}
		if m.binary {
			continue // the agent protocol is JSON text only
		}
		ev, err := cartesia.DecodeAgentEvent(m.data)
		if err != nil {
			return cartesia.AgentEvent{}, badEvent(err, GrantAgent)
		}
		if ev.Err != nil {
			return cartesia.AgentEvent{}, streamError(ev.Err, GrantAgent)
		}
		return ev, nil
	}
}

// Release stops reading: messages still queued and any that arrive are dropped.
func (a *AgentCall) Release() { a.s.release() }

// Closed waits until the call's socket has ended and returns how.
func (a *AgentCall) Closed(ctx context.Context) (CloseStatus, error) {
	return a.s.Closed(ctx)
}
