package redisconf

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func intp(i int) *int { return &i }

func TestUniversalOptions(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		addrs  []string
		user   string
		pass   string
		db     int
		errHas string
	}{
		{name: "address", cfg: Config{Address: "127.0.0.1:6379", Password: "pw", DB: intp(3)}, addrs: []string{"127.0.0.1:6379"}, pass: "pw", db: 3},
		{name: "addresses", cfg: Config{Addresses: []string{"a:1"}, Username: "u"}, addrs: []string{"a:1"}, user: "u"},
		{name: "url", cfg: Config{URL: "redis://bob:secret@10.0.0.1:6380/2"}, addrs: []string{"10.0.0.1:6380"}, user: "bob", pass: "secret", db: 2},
		{name: "overlays win over the url", cfg: Config{URL: "redis://:pw@u:6380/3", Address: "a:1", Password: "other", DB: intp(0)},
			addrs: []string{"a:1"}, pass: "other", db: 0},
		{name: "sentinels", cfg: Config{Mode: ModeSentinel, Addresses: []string{"s1:26379", "s2:26379"}, MasterName: "m"},
			addrs: []string{"s1:26379", "s2:26379"}},
		{name: "bad url hides the password", cfg: Config{URL: "http://user:secret@x"}, errHas: "not a valid"},
		{name: "empty", cfg: Config{}, errHas: "url, address or addresses is required"},
		{name: "single takes one address", cfg: Config{Addresses: []string{"a:1", "b:1"}}, errHas: "takes one address"},
		{name: "sentinel needs a master name", cfg: Config{Mode: ModeSentinel, Addresses: []string{"a:1"}}, errHas: "master_name"},
		{name: "cluster has db 0 only", cfg: Config{Mode: ModeCluster, Addresses: []string{"a:1"}, DB: intp(1)}, errHas: "must be 0"},
		{name: "unknown mode", cfg: Config{Mode: "ring", Address: "a:1"}, errHas: "mode"},
		{name: "half a client certificate", cfg: Config{Address: "a:1", TLS: TLS{CertFile: "c.pem"}}, errHas: "cert_file and key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.cfg.universal(Profile{MaxRetries: -1})
			if tt.errHas != "" {
				require.ErrorContains(t, err, tt.errHas)
				require.NotContains(t, err.Error(), "secret")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.addrs, o.Addrs)
			require.Equal(t, tt.user, o.Username)
			require.Equal(t, tt.pass, o.Password)
			require.Equal(t, tt.db, o.DB)
			require.Equal(t, -1, o.MaxRetries)
			require.Equal(t, IOTimeout, o.ReadTimeout)
			require.Equal(t, DialTimeout, o.DialTimeout)
		})
	}
	o, err := Config{URL: "rediss://h:1"}.universal(Profile{IOTimeout: 5})
	require.NoError(t, err)
	require.NotNil(t, o.TLSConfig, "rediss:// turns TLS on")
	require.EqualValues(t, 5, o.ReadTimeout)
}

func TestNewClientPerMode(t *testing.T) {
	for _, tt := range []struct {
		cfg     Config
		cluster bool
	}{
		{Config{Address: "127.0.0.1:1"}, false},
		{Config{Mode: ModeSentinel, Addresses: []string{"127.0.0.1:1"}, MasterName: "m"}, false},
		{Config{Mode: ModeCluster, Addresses: []string{"127.0.0.1:1"}}, true},
	} {
		c, err := tt.cfg.NewClient(Profile{})
		require.NoError(t, err)
		_, isCluster := c.(*redis.ClusterClient)
		require.Equal(t, tt.cluster, isCluster, tt.cfg.Describe())
		require.Equal(t, tt.cluster, tt.cfg.IsCluster())
		require.NoError(t, c.Close())
	}
}

func TestSharedOneClientPerConfiguration(t *testing.T) {
	s := redistest.Start(t)
	var reg Shared
	a := Config{Address: s.Addr}
	c1, err := reg.Client(a, Profile{MaxRetries: -1})
	require.NoError(t, err)
	c2, err := reg.Client(a, Profile{MaxRetries: -1})
	require.NoError(t, err)
	require.Same(t, c1.Unwrap(), c2.Unwrap(), "same configuration, same client")
	c3, err := reg.Client(a, Profile{MaxRetries: -1, IOTimeout: 500})
	require.NoError(t, err)
	require.NotSame(t, c1.Unwrap(), c3.Unwrap())
	require.Equal(t, 2, reg.Len())

	require.NoError(t, c1.Close())
	require.NoError(t, c1.Close(), "a second close does nothing")
	require.NoError(t, c2.Ping(t.Context()).Err(), "still open for the other holder")
	require.NoError(t, c2.Close())
	require.Error(t, c2.Unwrap().Ping(t.Context()).Err(), "closed with the last holder")
	require.NoError(t, c3.Close())
	require.Zero(t, reg.Len())
}
