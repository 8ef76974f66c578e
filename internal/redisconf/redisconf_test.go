package redisconf

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOptions(t *testing.T) {
	o, err := Config{Address: "127.0.0.1:6379", Password: "pw", DB: 3}.Options(-1)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:6379", o.Addr)
	require.Equal(t, 3, o.DB)
	require.Equal(t, -1, o.MaxRetries)
	require.Equal(t, 1, o.DialerRetries)
	require.Equal(t, IOTimeout, o.ReadTimeout)

	o, err = Config{URL: "redis://:secret@10.0.0.1:6380/2", Address: "ignored:1"}.Options(1)
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:6380", o.Addr)
	require.Equal(t, 2, o.DB)

	_, err = Config{URL: "http://user:secret@x"}.Options(1)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
	_, err = Config{}.Options(1)
	require.ErrorContains(t, err, "url or address")
}
