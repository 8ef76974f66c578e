package correction

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCorrector(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		observe   [][2]int64 // estimated, actual
		want      float64
		tolerance float64
	}{
		{name: "no data", want: 1},
		{name: "too few observations", cfg: Config{MinObservations: 5}, observe: repeat(4, 100, 150), want: 1},
		{name: "constant ratio", cfg: Config{MinObservations: 5}, observe: repeat(5, 100, 150), want: 1.5, tolerance: 1e-9},
		{name: "converges to the new ratio", cfg: Config{MinObservations: 1, Alpha: 0.2},
			observe: append(repeat(20, 100, 300), repeat(60, 100, 80)...), want: 0.8, tolerance: 1e-3},
		{name: "clamped high", cfg: Config{MinObservations: 1}, observe: repeat(3, 10, 1000), want: 4},
		{name: "clamped low", cfg: Config{MinObservations: 1, MinFactor: 0.5, MaxFactor: 2}, observe: repeat(3, 1000, 1), want: 0.5},
		{name: "ignores empty observations", cfg: Config{MinObservations: 1},
			observe: [][2]int64{{0, 100}, {100, 0}, {-1, 5}}, want: 1},
		{name: "invalid config falls back to defaults", cfg: Config{Alpha: 7, MinObservations: -1, MinFactor: -1, MaxFactor: -2},
			observe: repeat(10, 100, 1000), want: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.cfg)
			for _, o := range tt.observe {
				c.Observe("openai", "gpt-4o", o[0], o[1])
			}
			require.InDelta(t, tt.want, c.Factor("openai", "gpt-4o"), tt.tolerance)
			require.InDelta(t, 1.0, c.Factor("anthropic", "gpt-4o"), 0, "pairs learn separately")
		})
	}
}

func repeat(n int, est, actual int64) [][2]int64 {
	out := make([][2]int64, n)
	for i := range out {
		out[i] = [2]int64{est, actual}
	}
	return out
}

func TestCorrectorCorrect(t *testing.T) {
	c := New(Config{MinObservations: 1})
	c.Observe("openai", "m", 100, 125)
	require.Equal(t, int64(125), c.Correct("openai", "m", 100))
	require.Equal(t, int64(2), c.Correct("openai", "m", 1)) // rounded up
	require.Equal(t, int64(0), c.Correct("openai", "m", 0))
	require.Equal(t, int64(7), c.Correct("gemini", "m", 7))
	c.Observe("openai", "small", 100, 25)
	require.Equal(t, int64(1), c.Correct("openai", "small", 1), "a positive estimate stays positive")
}

func TestCorrectorBounded(t *testing.T) {
	c := New(Config{MinObservations: 1, MaxEntries: 10})
	c.Observe("openai", "keep", 10, 20)
	for i := range 1000 {
		c.Observe("openai", "keep", 10, 20) // recently used: survives eviction
		c.Observe("openai", fmt.Sprintf("m%d", i), 10, 30)
	}
	require.LessOrEqual(t, len(c.entries), 10)
	require.InDelta(t, 2.0, c.Factor("openai", "keep"), 1e-9)
	require.InDelta(t, 3.0, c.Factor("openai", "m999"), 1e-9)
	require.InDelta(t, 1.0, c.Factor("openai", "m0"), 0)

	long := strings.Repeat("y", 10000)
	c.Observe("openai", long, 10, 20)
	require.InDelta(t, 2.0, c.Factor("openai", long), 1e-9)
	for k := range c.entries {
		require.LessOrEqual(t, len(k.model), 128)
	}
}

func TestCorrectorConcurrent(t *testing.T) {
	c := New(Config{MinObservations: 1, MaxEntries: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				m := fmt.Sprintf("m%d", (g+i)%16)
				c.Observe("openai", m, 100, 200)
				f := c.Factor("openai", m)
				if f != 1 && f != 2 {
					t.Errorf("factor %v", f)
					return
				}
			}
		}()
	}
	wg.Wait()
}
