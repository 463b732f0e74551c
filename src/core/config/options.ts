import { KindGuard, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { assembleSchema, defaultOf, schemaAt, withCoreSections } from './schema.js'
import { SETTING_KEYWORD, SettingMetaSchema, type ConfigSection, type SettingMeta } from './section.js'

/** How one setting is reached from outside: its key path(s), environment variable and CLI flag. */
export interface OptionSpec {
  /** Key paths this option sets (`--host` sets two). */
  readonly paths: readonly string[]
  readonly env: `CE_BROKER_${string}`
  readonly flag?: `--${string}`
  /** Shown in `--help`: the README's text without its Markdown. */
  readonly doc: string
  /** Shown in `--help`: the README's default without its Markdown. */
  readonly default: string
}

/** A documented setting (or a shortcut setting several): one row of the README's table. */
export interface SettingRow {
  readonly paths: readonly string[]
  readonly meta: SettingMeta
  /** The default as the README shows it (Markdown). */
  readonly shownDefault: string
}

/** Every documented setting of the sections (the core's included), in the order the sections and their schemas list them. */
export function settingRows (sections: readonly ConfigSection[]): SettingRow[] {
  const all = withCoreSections(sections)
  const root = assembleSchema(all)
  const rows: SettingRow[] = []
  const seen = new Set<string>()
  for (const section of all) {
    for (const shortcut of section.shortcuts ?? []) {
      const first = schemaAt(root, shortcut.paths[0])
      rows.push({ paths: shortcut.paths, meta: shortcut, shownDefault: shownDefault(shortcut, first === undefined ? undefined : defaultOf(first)) })
    }
    // sections sharing a key are walked once, merged, when the first of them comes
    if (seen.has(section.key)) continue
    seen.add(section.key)
    const schema = schemaAt(root, section.key)
    if (schema !== undefined) collectRows(schema, section.key, rows)
  }
  return rows
}

function collectRows (schema: TSchema, path: string, rows: SettingRow[]): void {
  const meta: unknown = schema[SETTING_KEYWORD]
  if (Value.Check(SettingMetaSchema, meta)) rows.push({ paths: [path], meta, shownDefault: shownDefault(meta, defaultOf(schema)) })
  if (!KindGuard.IsObject(schema)) return
  for (const [name, property] of Object.entries(schema.properties)) collectRows(property, `${path}.${name}`, rows)
}

/** The README's default: the metadata's where the schema cannot say it, else the schema's, else none. */
function shownDefault (meta: SettingMeta, value: unknown): string {
  if (meta.shownDefault !== undefined) return meta.shownDefault
  if (value === undefined) return 'none'
  const shown = Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === 'string')
    ? value.map((item) => `\`${item}\``).join(', ')
    : `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``
  return meta.defaultNote === undefined ? shown : `${shown} (${meta.defaultNote})`
}

/** Every setting reachable from the environment or the command line: what `--help` lists and `CE_BROKER_*` may name. */
export function configOptions (sections: readonly ConfigSection[]): OptionSpec[] {
  const options: OptionSpec[] = []
  for (const row of settingRows(sections)) {
    const { env, flag, doc } = row.meta
    if (env === undefined) continue
    options.push({ paths: row.paths, env, ...(flag === undefined ? {} : { flag }), doc: plainText(doc), default: plainText(row.shownDefault) })
  }
  return options
}

/** Markdown as a terminal shows it: code without backticks, links as their text. */
function plainText (markdown: string): string {
  return markdown.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, '')
}

/** The README's configuration table (Markdown): every documented setting of the sections. */
export function configTable (sections: readonly ConfigSection[]): string {
  const lines = ['| key | default | environment | flag | meaning |', '| --- | --- | --- | --- | --- |']
  for (const { paths, meta, shownDefault } of settingRows(sections)) {
    const flag = meta.flag === undefined ? '' : `\`${meta.flag}${meta.flagArg === undefined ? '' : ` ${meta.flagArg}`}\``
    const cells = [paths.map((path) => `\`${path}\``).join(', '), shownDefault, meta.env === undefined ? '' : `\`${meta.env}\``, flag, meta.doc]
    lines.push(`|${cells.map((cell) => cell === '' ? ' ' : ` ${cell} `).join('|')}|`)
  }
  return lines.join('\n')
}
