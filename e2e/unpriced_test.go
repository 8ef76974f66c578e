package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A call to a model no price covers is served and recorded as cost
// unknown, and /health lists the model so an operator can add a price.
func TestUnpricedModelListedOnHealth(t *testing.T) {
	s := startEmulated(t)
	resp := post(t, s, "/openai/v1/chat/completions", "application/json",
		[]byte(`{"model":"acme-unpriced-7","messages":[{"role":"user","content":"hi"}]}`), http.Header{})
	readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	recs := s.Records(t, 1)
	require.False(t, recs[0].Cost.Known)

	hr, err := httpClient().Get(s.adminURL + "/health")
	require.NoError(t, err)
	defer hr.Body.Close()
	var health struct {
		Unpriced []struct {
			Provider string `json:"provider"`
			Model    string `json:"model"`
			Requests int64  `json:"requests"`
		} `json:"unpriced_models"`
	}
	require.NoError(t, json.NewDecoder(hr.Body).Decode(&health))
	require.Len(t, health.Unpriced, 1)
	require.Equal(t, "openai", health.Unpriced[0].Provider)
	require.Equal(t, "acme-unpriced-7", health.Unpriced[0].Model)
	require.EqualValues(t, 1, health.Unpriced[0].Requests)
}
