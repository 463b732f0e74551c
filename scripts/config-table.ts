/**
 * Prints the README's configuration table, generated from the config sections' schemas:
 * `node --import tsx scripts/config-table.ts`, then paste it under "## Configuration".
 * test/core/config-table.test.ts fails while the README and the schemas disagree.
 */
import { builtinConfigTable } from '../src/config.js'

process.stdout.write(`${builtinConfigTable()}\n`)
