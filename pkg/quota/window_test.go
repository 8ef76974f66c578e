package quota

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWindowTable(t *testing.T) {
	tests := []struct {
		name       string
		at         time.Time
		w          Window
		index      int64
		start, end time.Time
	}{
		{name: "day", at: t0, w: Day, index: 22040,
			start: time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC), end: time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)},
		{name: "month", at: t0, w: Month, index: 2030*12 + 4,
			start: time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC), end: time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)},
		{name: "december rolls the year", at: time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC), w: Month, index: 2030*12 + 11,
			start: time.Date(2030, 12, 1, 0, 0, 0, 0, time.UTC), end: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "local time is read as UTC", at: time.Date(2030, 6, 1, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)), w: Month, index: 2030*12 + 4,
			start: time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC), end: time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)},
		{name: "before the epoch", at: time.Unix(-1, 0), w: Day, index: -1,
			start: time.Unix(-86400, 0).UTC(), end: time.Unix(0, 0).UTC()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := tt.w.Index(tt.at)
			require.Equal(t, tt.index, idx)
			require.Equal(t, tt.start, tt.w.Start(idx))
			require.Equal(t, tt.end, tt.w.End(idx))
		})
	}
}
