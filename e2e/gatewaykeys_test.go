package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

const adminToken = "admin-token-for-e2e"

// vendorKeys are the keys the gateway holds; the fake vendor must see
// exactly these, never a gateway key.
var vendorKeys = map[string]string{
	"openai":    "sk-vendor-openai-0123456789",
	"anthropic": "sk-ant-vendor-0123456789",
	"gemini":    "AIza-vendor-gemini-0123456789",
}

// gatewayKeysOn puts every provider in gateway_keys mode with its vendor
// key, the key store on Redis at addr, and turns the admin API on.
func gatewayKeysOn(addr string) []emuOption {
	return []emuOption{
		withEnv(map[string]string{"LLM_PROXY_ADMIN_TOKEN": adminToken}),
		withConfig(func(c *config.Config) {
			for p, k := range vendorKeys {
				pc := c.Providers[p]
				pc.Auth = credentials.ModeGatewayKeys
				pc.Credentials = &credentials.Config{APIKey: credentials.NewSecret(k)}
				c.Providers[p] = pc
			}
			gk := &keys.Config{Store: keys.StoreRedis, Redis: redisconf.Config{Address: addr}}
			gk.ApplyDefaults()
			c.Features.GatewayKeys = gk
		}),
	}
}

// admin calls the admin API of s and decodes the JSON answer into out
// (when not nil). It returns the status.
func admin(t *testing.T, s *emulated, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.adminURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpClient().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

type createdKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func createKey(t *testing.T, s *emulated, spec keys.KeySpec) createdKey {
	t.Helper()
	var k createdKey
	require.Equal(t, http.StatusCreated, admin(t, s, http.MethodPost, "/admin/keys", spec, &k))
	require.True(t, strings.HasPrefix(k.Key, "llmp-"), "a gateway key is recognisable: %q", k.ID)
	return k
}

// chatStatus makes one OpenAI SDK call with key and returns the HTTP
// status (200 on success).
func chatStatus(t *testing.T, s stack, key, model string) int {
	t.Helper()
	p := chatParams()
	p.Model = model
	_, err := openaiClient(s, option.WithAPIKey(key)).Chat.Completions.New(t.Context(), p)
	if err == nil {
		return http.StatusOK
	}
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	return apiErr.StatusCode
}

// storeVersion is the key-store version s's index was built from, read
// from its /health.
func storeVersion(t *testing.T, s *emulated) float64 {
	t.Helper()
	var h struct {
		GatewayKeys struct {
			StoreVersion float64 `json:"store_version"`
		} `json:"gateway_keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(readAll(t, mustGet(t, s.adminURL+"/health"))), &h))
	return h.GatewayKeys.StoreVersion
}

// synced waits until b's key index is at a's store version: every change
// made through a is then visible on b. Probing with requests instead
// would trip the failed-lookup limiter, which is working as intended.
func synced(t *testing.T, a, b *emulated) {
	t.Helper()
	want := storeVersion(t, a)
	require.Eventually(t, func() bool { return storeVersion(t, b) >= want }, 10*time.Second, 10*time.Millisecond,
		"instance b reaches store version %v", want)
}

func TestGatewayKeysWithEachSDK(t *testing.T) {
	rdb := redistest.Start(t)
	var logs syncBuffer
	dir := t.TempDir()
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withLogs(&logs), costTracking(dir, nil))...)

	require.Equal(t, http.StatusUnauthorized, func() int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.adminURL+"/admin/keys", nil)
		resp, err := httpClient().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}(), "the admin API refuses a call without the token")

	t.Run("the public listener does not serve the admin API", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/admin/keys", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := httpClient().Do(req)
		require.NoError(t, err)
		body := readAll(t, resp)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "no route for /admin/ on Envoy's listener: %s", body)
	})

	k := createKey(t, s, keys.KeySpec{Owner: "ann", Team: "", Description: "e2e",
		Models: []string{"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"}})

	t.Run("openai", func(t *testing.T) {
		c := openaiClient(s, option.WithAPIKey(k.Key))
		_, err := c.Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err)
		st := c.Chat.Completions.NewStreaming(t.Context(), chatParams())
		for st.Next() {
		}
		require.NoError(t, st.Err())
	})
	t.Run("anthropic", func(t *testing.T) {
		c := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key))
		_, err := c.Messages.New(t.Context(), messageParams())
		require.NoError(t, err)
		st := c.Messages.NewStreaming(t.Context(), messageParams())
		for st.Next() {
		}
		require.NoError(t, st.Err())
	})
	t.Run("gemini", func(t *testing.T) {
		c, err := genai.NewClient(t.Context(), &genai.ClientConfig{APIKey: k.Key, Backend: genai.BackendGeminiAPI,
			HTTPOptions: genai.HTTPOptions{BaseURL: s.URL() + "/gemini/"}})
		require.NoError(t, err)
		_, err = c.Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
		require.NoError(t, err)
		for _, err := range c.Models.GenerateContentStream(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil) {
			require.NoError(t, err)
		}
	})
	calls := s.VendorCalls(t)
	require.Len(t, calls, 6, "two calls per vendor reached it")
	for _, c := range calls {
		require.Equal(t, vendorKeys[string(c.Vendor)], c.APIKey, "%s receives the configured vendor key", c.Vendor)
		for name, vs := range c.Header {
			for _, v := range vs {
				require.NotContains(t, v, k.Key, "the gateway key never reaches the vendor (header %s)", name)
			}
		}
		require.NotContains(t, c.OriginalPath, "llmp-")
	}

	t.Run("refusals in the vendor's shape, never sent upstream", func(t *testing.T) {
		before := len(s.VendorCalls(t))
		p := chatParams()
		p.Model = "gpt-4o"
		_, err := openaiClient(s, option.WithAPIKey(k.Key)).Chat.Completions.New(t.Context(), p)
		var oe *openai.Error
		require.ErrorAs(t, err, &oe)
		require.Equal(t, http.StatusForbidden, oe.StatusCode)
		require.Contains(t, oe.Message, `"gpt-4o"`, "the refusal names the model")
		require.NotContains(t, oe.RawJSON(), k.Key)

		_, err = anthropicClient(s, "/anthropic/", aoption.WithAPIKey("llmp-not-a-key-at-all-000000000000000000000")).Messages.New(t.Context(), messageParams())
		var ae *anthropic.Error
		require.ErrorAs(t, err, &ae)
		require.Equal(t, http.StatusUnauthorized, ae.StatusCode)
		require.Contains(t, ae.RawJSON(), "authentication_error")

		_, err = openaiClient(s, option.WithAPIKey("")).Chat.Completions.New(t.Context(), chatParams())
		require.ErrorAs(t, err, &oe)
		require.Equal(t, http.StatusUnauthorized, oe.StatusCode)
		require.Equal(t, "invalid_api_key", oe.Code)
		require.Equal(t, before, len(s.VendorCalls(t)), "refused calls never reach the vendor")
	})

	t.Run("no secret anywhere", func(t *testing.T) {
		records := readAll(t, mustGet(t, s.adminURL+"/metrics"))
		recs := waitRecords(t, filepath.Join(dir, "costs.jsonl"), 9)
		b, err := json.Marshal(recs)
		require.NoError(t, err)
		access, err := json.Marshal(s.AccessLog(t, 9))
		require.NoError(t, err)
		usageJSON := readAll(t, authGet(t, s.adminURL+"/usage"))
		client := redis.NewClient(&redis.Options{Addr: rdb.Addr})
		defer client.Close()
		dump := redisDump(t, client)
		places := map[string]string{"logs": logs.String(), "metrics": records, "cost records": string(b),
			"access log and metadata": string(access), "/usage": usageJSON, "redis": dump}
		for where, text := range places {
			require.NotContains(t, text, k.Key, "gateway key secret in %s", where)
			for p, v := range vendorKeys {
				require.NotContains(t, text, v, "%s vendor key in %s", p, where)
			}
		}
		require.Contains(t, string(b), `"key_id":"`+k.ID+`"`, "cost records name the key by its id")
		require.Contains(t, string(b), `"key_owner":"ann"`)
		require.Contains(t, usageJSON, k.ID)
		require.Contains(t, logs.String(), k.ID, "the request log names the key id")
	})
}

func TestGatewayKeyLifecycleAcrossInstances(t *testing.T) {
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	a := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withClock(clk.Now))...)
	b := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withClock(clk.Now))...)
	eventually := func(s stack, key string, want int, msg string) {
		t.Helper()
		require.Eventually(t, func() bool { return chatStatus(t, s, key, "gpt-4o-mini") == want }, 10*time.Second, 20*time.Millisecond, msg)
	}

	k := createKey(t, a, keys.KeySpec{Owner: "bo"})
	require.Equal(t, http.StatusOK, chatStatus(t, a, k.Key, "gpt-4o-mini"), "the creating instance sees the key at once")
	synced(t, a, b)
	require.Equal(t, http.StatusOK, chatStatus(t, b, k.Key, "gpt-4o-mini"), "the other instance sees a new key within its sync interval")

	// Revoked on a: b refuses it within one sync interval (500 ms; the
	// bound here is generous for a loaded machine, the interval is what
	// the configuration promises).
	require.Equal(t, http.StatusOK, admin(t, a, http.MethodDelete, "/admin/keys/"+k.ID, nil, nil))
	require.Equal(t, http.StatusUnauthorized, chatStatus(t, a, k.Key, "gpt-4o-mini"))
	eventually(b, k.Key, http.StatusUnauthorized, "a revocation reaches the other instance")

	// Expiry follows the gateway's clock.
	exp := createKey(t, a, keys.KeySpec{Owner: "bo", ExpiresAt: clk.Now().Add(time.Hour)})
	synced(t, a, b)
	require.Equal(t, http.StatusOK, chatStatus(t, b, exp.Key, "gpt-4o-mini"), "valid before its expiry")
	clk.Advance(2 * time.Hour)
	eventually(b, exp.Key, http.StatusUnauthorized, "an expired key is refused")

	// Rotation: the new secret works at once, the old one for the grace.
	r := createKey(t, a, keys.KeySpec{Owner: "bo"})
	synced(t, a, b)
	require.Equal(t, http.StatusOK, chatStatus(t, b, r.Key, "gpt-4o-mini"), "before rotation")
	var rotated createdKey
	require.Equal(t, http.StatusOK, admin(t, a, http.MethodPost, "/admin/keys/"+r.ID+"/rotate", map[string]int{"grace_period_seconds": 600}, &rotated))
	require.NotEqual(t, r.Key, rotated.Key)
	synced(t, a, b)
	eventually(b, rotated.Key, http.StatusOK, "the new secret works")
	require.Equal(t, http.StatusOK, chatStatus(t, b, r.Key, "gpt-4o-mini"), "the old secret works during the grace period")
	clk.Advance(11 * time.Minute)
	eventually(b, r.Key, http.StatusUnauthorized, "the old secret ends with its grace period")
	eventually(b, rotated.Key, http.StatusOK, "the new secret keeps working")
}

func TestTeamBudgetSharedByTwoKeysOnTwoInstances(t *testing.T) {
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	dirs := [2]string{t.TempDir(), t.TempDir()}
	mk := func(dir string) *emulated {
		return startEmulated(t, append(gatewayKeysOn(rdb.Addr), withClock(clk.Now), costTracking(dir, func(ct *config.CostTracking) {
			ct.Budgets.Enabled = true
			ct.Budgets.Backend = quota.BackendRedis
			ct.Budgets.Redis.Address = rdb.Addr
		}))...)
	}
	gws := [2]*emulated{mk(dirs[0]), mk(dirs[1])}
	require.Equal(t, http.StatusCreated, admin(t, gws[0], http.MethodPost, "/admin/teams",
		keys.TeamSpec{ID: "ml", Budget: keys.Budget{DailyUSD: 0.012}}, nil))
	ks := [2]createdKey{createKey(t, gws[0], keys.KeySpec{Owner: "ann", Team: "ml"}), createKey(t, gws[0], keys.KeySpec{Owner: "bo", Team: "ml"})}
	synced(t, gws[0], gws[1])
	call := func(i int) error {
		_, err := openaiClient(gws[i%2], option.WithAPIKey(ks[i%2].Key), option.WithHeader("x-fake-input-tokens", "1000"),
			option.WithHeader("x-fake-output-tokens", "1000")).Chat.Completions.New(t.Context(), chatParams())
		return err
	}
	// Each call costs exactly $0.005: with $0.012 for the team, the third
	// call still fits ($0.010 spent), the fourth does not, on either
	// instance and with either key.
	spendThenRefuse(t, call, recorded(t, dirs))
	var sum float64
	// Every call is recorded: the three served and the two refused with 402.
	recs := append(waitRecords(t, filepath.Join(dirs[0], "costs.jsonl"), 3), waitRecords(t, filepath.Join(dirs[1], "costs.jsonl"), 2)...)
	require.Len(t, recs, 5)
	refused := 0
	for _, r := range recs {
		require.Equal(t, "ml", r.Team)
		if r.Status == http.StatusPaymentRequired {
			refused++
			require.Zero(t, r.TotalCostUSD)
		}
		sum += r.TotalCostUSD
	}
	require.Equal(t, 2, refused)
	require.EqualValues(t, budget.Nanos(sum), dailySpendNanos(t, rdb.Addr, "team:ml", midMinute),
		"zero drift: the team's spend equals the cost records")
	require.InDelta(t, 0.015, sum, 1e-12)
}

func mustGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := httpClient().Get(url)
	require.NoError(t, err)
	return resp
}

func authGet(t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpClient().Do(req)
	require.NoError(t, err)
	return resp
}

// redisDump returns every key and value in the database as text.
func redisDump(t *testing.T, c *redis.Client) string {
	t.Helper()
	var sb strings.Builder
	ctx := t.Context()
	ks, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, ks)
	for _, k := range ks {
		sb.WriteString(k + "\n")
		switch typ, _ := c.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := c.Get(ctx, k).Result()
			sb.WriteString(v + "\n")
		case "hash":
			m, _ := c.HGetAll(ctx, k).Result()
			for f, v := range m {
				sb.WriteString(f + "=" + v + "\n")
			}
		case "set":
			m, _ := c.SMembers(ctx, k).Result()
			sb.WriteString(strings.Join(m, "\n"))
		case "zset":
			m, _ := c.ZRange(ctx, k, 0, -1).Result()
			sb.WriteString(strings.Join(m, "\n"))
		case "list":
			m, _ := c.LRange(ctx, k, 0, -1).Result()
			sb.WriteString(strings.Join(m, "\n"))
		}
	}
	return sb.String()
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
