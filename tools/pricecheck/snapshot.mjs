// Prints the genai-prices catalog installed in node_modules as the JSON
// snapshot that pkg/cost embeds (pkg/cost/catalog/genai-prices.json).
// Run by `make update-prices`; SNAPSHOT_DATE (YYYY-MM-DD) names the day it
// was taken. Only the providers the gateway serves are kept, under the
// gateway's provider names.
import { readFileSync } from 'node:fs'
import { findProvider } from '@pydantic/genai-prices'

const pkgDir = new URL('./node_modules/@pydantic/genai-prices/', import.meta.url)
const pkg = JSON.parse(readFileSync(new URL('package.json', pkgDir), 'utf8'))

// gateway provider name -> genai-prices provider id
const providers = { anthropic: 'anthropic', gemini: 'google', openai: 'openai' }

const date = process.env.SNAPSHOT_DATE
if (!/^\d{4}-\d{2}-\d{2}$/.test(date ?? '')) {
  console.error('snapshot.mjs: set SNAPSHOT_DATE=YYYY-MM-DD')
  process.exit(2)
}

const out = {
  source: 'https://github.com/pydantic/genai-prices',
  package: pkg.name,
  version: pkg.version,
  license: 'MIT, Copyright (c) Pydantic Services Inc.; see pkg/cost/catalog/LICENSE.genai-prices',
  snapshot_date: date,
  providers: {},
}
for (const [gateway, id] of Object.entries(providers)) {
  const p = findProvider({ providerId: id })
  if (!p || p.id !== id) {
    console.error(`snapshot.mjs: provider ${id} missing from ${pkg.name}@${pkg.version}`)
    process.exit(1)
  }
  out.providers[gateway] = {
    id: p.id,
    pricing_urls: p.pricing_urls ?? [],
    models: p.models.map((m) => ({ id: m.id, match: m.match, prices: m.prices })),
  }
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n')
