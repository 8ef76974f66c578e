package providers

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"
)

func encodeImage(t *testing.T, format string, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	}
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// webpVP8X is the header of an extended WebP of w x h pixels.
func webpVP8X(w, h int) string {
	b := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00")
	b = append(b, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	return base64.StdEncoding.EncodeToString(b)
}

// webpVP8L is the header of a lossless WebP of w x h pixels.
func webpVP8L(w, h int) string {
	b := []byte("RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f")
	v := uint32(w-1) | uint32(h-1)<<14
	b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	return base64.StdEncoding.EncodeToString(b)
}

// jpegWithAPP1 is a JPEG whose size marker follows a large APP1 (EXIF)
// segment, as camera images have.
func jpegWithAPP1(t *testing.T, w, h int) string {
	raw, err := base64.StdEncoding.DecodeString(encodeImage(t, "jpeg", w, h))
	require.NoError(t, err)
	app1 := make([]byte, 4+30000)
	app1[0], app1[1], app1[2], app1[3] = 0xff, 0xe1, byte((len(app1)-2)>>8), byte(len(app1)-2)
	out := append(append(append([]byte{}, raw[:2]...), app1...), raw[2:]...)
	return base64.StdEncoding.EncodeToString(out)
}

func TestImageSize(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		w, h   int
		wantOK bool
	}{
		{"png", encodeImage(t, "png", 640, 480), 640, 480, true},
		{"gif", encodeImage(t, "gif", 33, 17), 33, 17, true},
		{"jpeg", encodeImage(t, "jpeg", 1000, 700), 1000, 700, true},
		{"jpeg after exif", jpegWithAPP1(t, 300, 200), 300, 200, true},
		{"webp extended", webpVP8X(3000, 2000), 3000, 2000, true},
		{"webp lossless", webpVP8L(100, 50), 100, 50, true},
		{"png signature only", "iVBORw0KGgo=", 0, 0, false},
		{"jpeg truncated", "/9j/4AAQ", 0, 0, false},
		{"not base64", "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@", 0, 0, false},
		{"text", base64.StdEncoding.EncodeToString([]byte("hello, world, this is not an image")), 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, h, ok := imageSize([]byte(tt.data))
			require.Equal(t, tt.wantOK, ok)
			if ok {
				require.Equal(t, [2]int{tt.w, tt.h}, [2]int{w, h})
			}
		})
	}
	t.Run("url-safe alphabet", func(t *testing.T) {
		raw, err := base64.StdEncoding.DecodeString(encodeImage(t, "png", 999, 1))
		require.NoError(t, err)
		w, h, ok := imageSize([]byte(base64.URLEncoding.EncodeToString(raw)))
		require.True(t, ok)
		require.Equal(t, [2]int{999, 1}, [2]int{w, h})
	})
}

func TestBase64Payload(t *testing.T) {
	data, ok := base64Payload([]byte("data:image/png;base64,iVBOR"))
	require.True(t, ok)
	require.Equal(t, "iVBOR", string(data))
	_, ok = base64Payload([]byte("https://example.com/a.png"))
	require.False(t, ok)
	_, ok = base64Payload([]byte("data:text/plain,hello"))
	require.False(t, ok)
}

// TestImageTokenRules checks each vendor's rule against the examples its
// documentation works through.
func TestImageTokenRules(t *testing.T) {
	openAI := func(model string, w, h int, sized, low bool) int64 {
		var a openAIImages
		a.add(w, h, sized, low)
		return a.tokens(model)
	}
	// OpenAI "Images and vision", calculating costs.
	require.EqualValues(t, 765, openAI("gpt-4o", 1024, 1024, true, false))
	require.EqualValues(t, 1105, openAI("gpt-4o", 2048, 4096, true, false))
	require.EqualValues(t, 85, openAI("gpt-4o", 4096, 8192, true, true))
	require.EqualValues(t, 765, openAI("gpt-4o", 0, 0, false, false), "unknown size: 1024x1024")
	require.EqualValues(t, 70+4*140, openAI("gpt-5", 1024, 1024, true, false))
	require.EqualValues(t, 2833+4*5667, openAI("gpt-4o-mini", 1024, 1024, true, false))
	require.EqualValues(t, 1659, openAI("gpt-4.1-mini", 1024, 1024, true, false), "1024 patches x 1.62")
	require.EqualValues(t, 2353, openAI("gpt-4.1-mini", 1800, 2400, true, false), "1452 patches x 1.62")
	require.EqualValues(t, 3742, openAI("gpt-4.1-nano", 4000, 4000, true, false), "scaled to 39x39 patches, x 2.46")
	require.EqualValues(t, 1229, openAI("gpt-5-mini", 1024, 1024, true, false), "1024 patches x 1.2 (pricing page calculator)")
	require.EqualValues(t, 1536, openAI("gpt-5-nano", 1024, 1024, true, false), "1024 patches x 1.5")

	// Anthropic "Vision": width*height/750 after fitting 1568 px and
	// about 1.15 megapixels.
	require.EqualValues(t, 1334, anthropicImageTokensFor(1000, 1000, true))
	require.EqualValues(t, 1534, anthropicImageTokensFor(3000, 2000, true))
	require.EqualValues(t, 54, anthropicImageTokensFor(200, 200, true))
	require.EqualValues(t, anthropicImageTokens, anthropicImageTokensFor(0, 0, false))

	// Gemini: 258 up to 384x384, then 768-px tiles; Gemini 3 by media
	// resolution.
	require.EqualValues(t, 258, geminiImageTokensFor("gemini-2.5-flash", 384, 384, true))
	require.EqualValues(t, 2*258, geminiImageTokensFor("gemini-2.5-flash", 1000, 500, true))
	require.EqualValues(t, 258, geminiImageTokensFor("gemini-2.0-flash", 0, 0, false))
	require.EqualValues(t, 258, geminiImageTokensFor("gemini-2.0-flash", 384, 300, true))
	require.EqualValues(t, 13*258, geminiImageTokensFor("gemini-2.0-flash", 3008, 2000, true))
	require.EqualValues(t, 1120, geminiImageTokensFor("gemini-3-flash-preview", 100, 100, true))
	require.True(t, isGemini3("gemini-3.5-flash"))
	require.False(t, isGemini3("gemini-2.5-pro"))
	require.False(t, isGemini3("gemma-3"))
}

func TestSchemaLayout(t *testing.T) {
	body := []byte(`{"type":"object","title":"T","required":["a"],"additionalProperties":false,
		"properties":{
			"a":{"type":"string","description":"Name"},
			"b":{"type":["integer","null"],"enum":[1,2]},
			"c":{"type":"array","items":{"type":"object","properties":{"d":{"$ref":"#/$defs/D"}}}}
		},
		"$defs":{"D":{"anyOf":[{"type":"string","format":"date"},{"const":"x"}]}}}`)
	s := newScan(body)
	var info RequestInfo
	end := schemaLayout(s, &info, 0)
	info.finishText()
	require.False(t, s.bad)
	require.Equal(t, len(body), end)
	// "object" and "array" are structure (braces, a "[]" suffix), not text.
	text := runes("a", "string", "Name", "b", "integer", "null", "1", "2",
		"c", "d", "#/$defs/D", "D", "string", "date", "x")
	require.Equal(t, text, info.TextRunes)
	// property lists: root, items, $defs; properties a, b, c, d, D; one
	// enum of two values.
	require.EqualValues(t, 3*layoutPropInit+5*layoutPropKey+layoutEnumInit+2*layoutEnumItem, info.OverheadTokens)
}
