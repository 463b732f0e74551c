import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { loadConfig } from '../../src/core/config/index.js'
import { ConfigError } from '../../src/core/errors.js'

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

test('the README\'s example of an unknown config key is what loadConfig says for that key', () => {
  // e.g. `ce-broker: config file broker.yaml: mqtt.prot is not a known key; known keys: ...`
  const examples = [...README.matchAll(/`ce-broker: config file ([^:`]+): ([\w.]+) is not a known key; known keys: [^`]*`/g)]
  assert.ok(examples.length > 0, 'the README shows an unknown-key error')
  for (const [quoted, file = '', path = ''] of examples) {
    // the same input: that file with that one key set
    const data: Record<string, unknown> = {}
    const keys = path.split('.')
    let node = data
    for (const key of keys.slice(0, -1)) {
      const child: Record<string, unknown> = {}
      node[key] = child
      node = child
    }
    node[keys[keys.length - 1] ?? ''] = 1883
    let said: unknown
    try {
      loadConfig({}, { file: { name: file, data } })
    } catch (err: unknown) {
      said = err
    }
    assert.ok(said instanceof ConfigError, `${path} is refused`)
    // the CLI prints the message after "ce-broker: "
    assert.equal(quoted, `\`ce-broker: ${said.message}\``)
  }
})
