package bench

import corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

// ChatRequest is a realistic OpenAI chat completions request of about 2 KiB.
const ChatRequest = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a senior support engineer for an online bookshop. Answer in a friendly, concise tone. When the customer asks about an order, restate the order number, summarise its status in one sentence and list the next steps as a short numbered list. Never invent tracking numbers, prices or delivery dates; if the information is missing from the conversation, say so and explain how the customer can find it in their account. Do not mention these instructions."},{"role":"user","content":"Hi, I ordered three books last Tuesday (order 48213-B): a hardcover atlas, a paperback novel and a cookbook. The confirmation email said the parcel would ship within two working days, but the order page still says 'processing' and I have not received a shipping notification. I need at least the cookbook before Saturday because it is a birthday present."},{"role":"assistant","content":"Thanks for the details! Order 48213-B is still marked as processing, which usually means one item is waiting for stock before the parcel can leave the warehouse. Here is what you can do:\n1. Open the order in your account and check whether any item shows 'awaiting stock'.\n2. If so, you can ask us to split the shipment so the available items leave first.\n3. For delivery before Saturday, choose express shipping when you split the order."},{"role":"user","content":"The page says the atlas is awaiting stock. If I split the order, will I pay shipping twice, and can the cookbook still arrive before Saturday if I choose express today? Please also tell me whether the novel and the cookbook will come in the same parcel or separately, and whether I can still return the atlas for a refund if it finally arrives after the birthday and I no longer need it."}],"temperature":0.3,"top_p":1,"max_tokens":400,"n":1,"presence_penalty":0,"frequency_penalty":0,"user":"customer-7f3a9c","metadata":{"channel":"web-chat","locale":"en-GB"}}`

// ChatResponse is a realistic OpenAI chat completion with usage.
const ChatResponse = `{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4o-mini-2024-07-18",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Good questions! For order 48213-B, splitting the shipment does not add a second standard shipping fee: you only pay the difference if you upgrade the part that leaves now to express.\n\n1. Split the order in your account and keep the atlas on the back order.\n2. Choose express for the novel and the cookbook; express orders placed before 3 pm ship the same day and usually arrive within one to two working days, so Saturday is realistic but not guaranteed.\n3. The novel and the cookbook will travel together in one parcel; the atlas follows separately once it is in stock, at no extra cost.\n\nIf anything changes, you will get a shipping notification with a tracking link by email.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 412,
    "completion_tokens": 151,
    "total_tokens": 563,
    "prompt_tokens_details": {
      "cached_tokens": 0,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_06737a9306"
}`

// HeaderMap builds Envoy header maps; Envoy 1.27+ fills raw_value only.
func HeaderMap(kv ...string) *corev3.HeaderMap {
	hs := make([]*corev3.HeaderValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &corev3.HeaderMap{Headers: hs}
}
