package e2e

import (
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// These cases look inside the server (emulated runner only): what it
// recorded for calls that Envoy's access log cannot fully describe.

func TestDisconnectedStreamIsRecordedAsAborted(t *testing.T) {
	s := startEmulated(t)
	disconnectMidStream(t, s)
	r := s.Records(t, 1)[0]
	require.Equal(t, processor.OutcomeAborted, r.Outcome)
	require.Equal(t, "gpt-4o-mini", r.Info.Model)
	require.True(t, r.Info.Stream)
	require.Positive(t, r.ResponseBytes, "part of the stream went by")
	require.False(t, r.Usage.Found, "the usage chunk never arrived")
}

func TestUpstreamResetKeepsUsageStreamedSoFar(t *testing.T) {
	s := startEmulated(t)
	// Anthropic sends input usage in message_start; a reset later keeps it.
	// The pause between writes lets each chunk reach the server before the
	// reset: chunks still queued when Envoy resets the ext_proc stream are
	// lost on the wire, in Envoy as in any HTTP/2 stack.
	st := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-reset-after-bytes", "900"),
		aoption.WithHeader("x-fake-chunk-delay-ms", "10")).Messages.NewStreaming(t.Context(), messageParams())
	for st.Next() {
	}
	require.Error(t, st.Err())
	r := s.Records(t, 1)[0]
	require.Equal(t, processor.OutcomeAborted, r.Outcome)
	call := s.VendorCalls(t)[0]
	require.NotNil(t, call.DeliveredUsage)
	require.Equal(t, call.DeliveredUsage.InputTokens, r.Usage.InputTokens, "record %+v bytes=%d status=%d", r.Usage, r.ResponseBytes, r.Status)
}

func TestEstimateComesFromTheBillableText(t *testing.T) {
	s := startEmulated(t)
	_, err := anthropicClient(s, "/anthropic/").Messages.New(t.Context(), anthropic.MessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 100,
		System:   []anthropic.TextBlockParam{{Text: "You are a careful assistant who answers briefly."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Explain ext_proc in one sentence."))},
	})
	require.NoError(t, err)
	r := s.Records(t, 1)[0]
	require.Equal(t, "text", r.EstimateSource)
	require.Positive(t, r.EstimatedInputTokens)
	require.EqualValues(t, 100, r.Info.MaxOutputTokens)
	// The fake counts one token per 4 characters of the same texts; the
	// default Anthropic ratio is 3.5, so the estimate is a little higher.
	require.InDelta(t, float64(r.Usage.InputTokens), float64(r.EstimatedInputTokens), float64(r.Usage.InputTokens)/3+1)
}
