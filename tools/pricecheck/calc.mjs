// Prices usages with genai-prices' reference calcPrice, offline, for the
// cross-check test in pkg/cost (crosscheck_test.go). Reads a JSON array of
// {provider_id, model, usage, timestamp} from stdin and prints a JSON array
// of {model_id, total_price, input_price, output_price} (null where the
// catalog has no price, {error} where calcPrice throws), plus the package
// version: {version, results}.
import { readFileSync } from 'node:fs'
import { calcPrice } from '@pydantic/genai-prices'

const pkgDir = new URL('./node_modules/@pydantic/genai-prices/', import.meta.url)
const { version } = JSON.parse(readFileSync(new URL('package.json', pkgDir), 'utf8'))

const cases = JSON.parse(readFileSync(0, 'utf8'))
const results = cases.map((c) => {
  try {
    const r = calcPrice(c.usage, c.model, { providerId: c.provider_id, timestamp: new Date(c.timestamp) })
    if (!r) return null
    return { model_id: r.model.id, total_price: r.total_price, input_price: r.input_price, output_price: r.output_price }
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) }
  }
})
process.stdout.write(JSON.stringify({ version, results }))
