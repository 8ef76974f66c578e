package main

import (
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChooseRuntime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		cgroup string // "" = no file
		want   runtimeSettings
	}{
		{"defaults, no container limit", nil, "", runtimeSettings{GCPercent: 200, GCPercentSource: "default"}},
		{"container without a limit", nil, "max\n", runtimeSettings{GCPercent: 200, GCPercentSource: "default"}},
		{"container limit", nil, "1073741824\n", runtimeSettings{GCPercent: 200, GCPercentSource: "default", MemoryLimit: 966367641}},
		{"GOGC given", map[string]string{"GOGC": "50"}, "", runtimeSettings{GCPercent: 50, GCPercentSource: "GOGC"}},
		{"GOGC off", map[string]string{"GOGC": "off"}, "", runtimeSettings{GCPercent: -1, GCPercentSource: "GOGC"}},
		{"GOMEMLIMIT given", map[string]string{"GOMEMLIMIT": "512MiB"}, "1073741824", runtimeSettings{GCPercent: 200, GCPercentSource: "default"}},
		{"unreadable limit", nil, "garbage", runtimeSettings{GCPercent: 200, GCPercentSource: "default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(path string) ([]byte, error) {
				require.Equal(t, cgroupMemoryMax, path)
				if tc.cgroup == "" {
					return nil, fs.ErrNotExist
				}
				return []byte(tc.cgroup), nil
			}
			require.Equal(t, tc.want, chooseRuntime(func(k string) string { return tc.env[k] }, read))
		})
	}
}
