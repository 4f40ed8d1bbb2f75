#!/usr/bin/env node
// Builds a JavaScript stanzahook filter into a WebAssembly component:
//
//     node guest-sdk/js/build.mjs <filter-dir> <out.wasm>
//
// <filter-dir> holds `filter.js` (or name the file itself instead of its directory), whose default
// export is `defineFilter({ ... })`; it imports the SDK as 'stanzahook-filter'.
//
// componentize-js resolves a relative import only inside one directory (the working directory if
// the source lies in it, else the source's own directory), and a bare one ('stanzahook-filter')
// as a path next to the importing file. So the build stages what it builds in a fresh temporary
// directory, and componentizes it from there:
//
//     <stage>/                              a copy of <filter-dir> (without dot entries,
//                                           node_modules and .wasm files)
//     <stage>/.stanzahook/stanzahook-filter.js   this SDK
//     <stage>/.stanzahook/entry.js          exports the default export's `before`, `after` and
//                                           `instances`, as the WIT world wants them
//
// and in each staged .js/.mjs file, every import of 'stanzahook-filter' is rewritten to the
// staged SDK's relative path (found with es-module-lexer: only the import's specifier changes,
// nothing else in the file, so line and column numbers in errors stay the filter's own). Paths
// in errors and stack traces are relative to <filter-dir>.
//
// The component is built against ../../wit (world `reusable-filter`), or the WIT of `--wit <dir>`.
// Of componentize-js's engine features, `http` (fetch) and `fetch-event` are left out: they import
// wasi:http, which stanzahook does not offer, so a component with them does not instantiate. The
// others stay: `stdio` (console.log and console.error land in stanzahook's log as [stdout] and
// [stderr] lines), `clocks` (performance.now and timers; without it they trap) and `random`
// (Math.random, crypto.getRandomValues; without it they give the same numbers in every instance),
// all of which stanzahook gives every filter, as a Rust filter's std uses them.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const USAGE = 'usage: node build.mjs [--wit <dir>] <filter-dir | filter.js> <out.wasm>';
const SDK = fileURLToPath(new URL('./stanzahook-filter.js', import.meta.url));
const SPECIFIER = 'stanzahook-filter';
const WORLD = 'reusable-filter';
const DISABLED_FEATURES = ['http', 'fetch-event'];

/** A path as the user would write it: relative to the working directory when inside it. */
function shown(cwd, path) {
  const rel = relative(cwd, path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function fail(message) {
  console.error(`stanzahook-filter build: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const positional = [];
  let wit = fileURLToPath(new URL('../../wit', import.meta.url));
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--wit') {
      if (argv[i + 1] === undefined) fail(`--wit needs a directory\n${USAGE}`);
      wit = resolve(argv[++i]);
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (argv[i].startsWith('-')) {
      fail(`unknown option ${argv[i]}\n${USAGE}`);
    } else {
      positional.push(argv[i]);
    }
  }
  if (positional.length !== 2) fail(USAGE);
  return { source: resolve(positional[0]), out: resolve(positional[1]), wit };
}

/** The filter's directory and main file, from a directory holding filter.js or a file. */
function findFilter(source) {
  let stat;
  try {
    stat = statSync(source);
  } catch {
    fail(`${source}: no such file or directory`);
  }
  if (stat.isDirectory()) {
    const main = join(source, 'filter.js');
    try {
      statSync(main);
    } catch {
      fail(`${source}: no filter.js in it`);
    }
    return { dir: source, main: 'filter.js' };
  }
  return { dir: dirname(source), main: basename(source) };
}

/** Copies the filter's directory into `stage`, leaving out what a build does not need. */
function copyTree(from, to) {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name.endsWith('.wasm')) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    const stat = statSync(source);
    if (stat.isDirectory()) copyTree(source, target);
    else if (stat.isFile()) copyFileSync(source, target);
  }
}

function* jsFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith('.')) yield* jsFiles(path);
    else if (entry.isFile() && ['.js', '.mjs'].includes(extname(entry.name))) yield path;
  }
}

/** Points each import of 'stanzahook-filter' in `file` at the staged SDK. */
function rewriteImports(file, sdk, parse) {
  const code = readFileSync(file, 'utf8');
  let imports;
  try {
    [imports] = parse(code, file);
  } catch {
    // Not valid JavaScript: left as it is, for the engine to report the syntax error with its place.
    return;
  }
  let to = relative(dirname(file), sdk).split(sep).join('/');
  if (!to.startsWith('.')) to = `./${to}`;
  let out = '';
  let at = 0;
  for (const { n, s, e } of imports) {
    if (n !== SPECIFIER) continue;
    out += code.slice(at, s) + to;
    at = e;
  }
  if (at > 0) writeFileSync(file, out + code.slice(at));
}

const ENTRY = (main) => `// Generated by build.mjs: the WIT world's exports, from the filter's default export.
import * as module from ${JSON.stringify(`../${main}`)};

const filter = module.default;
if (typeof filter?.before !== 'function' || typeof filter?.after !== 'function' || typeof filter?.instances?.reuse !== 'function') {
  throw new Error(${JSON.stringify(`${main} must \`export default defineFilter({ ... })\`, with defineFilter imported from '${SPECIFIER}'`)});
}

export const { before, after, instances } = filter;
`;

/**
 * Imports a build dependency from beside this script (guest-sdk/js/node_modules, what
 * `npm ci --prefix guest-sdk/js` installs), else from the nearest node_modules above the filter:
 * a filter project of its own that installed componentize-js, built by a copy of this script
 * (`stanzahook dev` writes one when it runs away from a checkout).
 */
async function dependency(name, from) {
  try {
    return await import(name);
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
  for (let dir = from; ; dir = dirname(dir)) {
    const home = join(dir, 'node_modules', name);
    if (existsSync(join(home, 'package.json'))) {
      const pkg = JSON.parse(readFileSync(join(home, 'package.json'), 'utf8'));
      const entry = pkg.exports?.import ?? pkg.exports?.['.']?.import ?? pkg.module ?? pkg.main ?? 'index.js';
      return import(pathToFileURL(join(home, entry)).href);
    }
    if (dirname(dir) === dir) throw new Error(`Cannot find package '${name}'`);
  }
}

async function main() {
  const { source, out, wit } = parseArgs(process.argv.slice(2));
  const filter = findFilter(source);
  try {
    statSync(wit);
  } catch {
    fail(`no WIT at ${wit}: pass the directory of stanzahook's filter.wit with --wit <dir>`);
  }

  let componentize;
  let lexer;
  try {
    ({ componentize } = await dependency('@bytecodealliance/componentize-js', filter.dir));
    lexer = await dependency('es-module-lexer', filter.dir);
  } catch (e) {
    fail(`${e.message}\ninstall the build's dependencies first: npm ci --prefix ${shown(process.cwd(), dirname(SDK)) || '.'}`);
  }
  await lexer.init;

  const started = performance.now();
  const stage = mkdtempSync(join(tmpdir(), 'stanzahook-js-'));
  const cwd = process.cwd();
  let component;
  let error;
  try {
    copyTree(filter.dir, stage);
    const own = join(stage, '.stanzahook');
    mkdirSync(own);
    const sdk = join(own, 'stanzahook-filter.js');
    copyFileSync(SDK, sdk);
    for (const file of jsFiles(stage)) rewriteImports(file, sdk, lexer.parse);
    writeFileSync(join(own, 'entry.js'), ENTRY(filter.main.split(sep).join('/')));
    // componentize-js maps the working directory to the engine's `/` when the source lies in it:
    // the stage, so that the filter's imports resolve and its errors name its own paths.
    process.chdir(stage);
    ({ component } = await componentize({
      sourcePath: join(own, 'entry.js'),
      witPath: wit,
      worldName: WORLD,
      disableFeatures: DISABLED_FEATURES,
    }));
  } catch (e) {
    error = String(e?.message ?? e)
      .replaceAll(`${stage}${sep}`, `${filter.dir}${sep}`)
      // componentize-js's preamble names its tools, not the problem.
      .replace(/^Failed to initialize component \(wizer \(.*\)\):\n/, '')
      .replace(/^Exception while evaluating top-level script\n/, '')
      // The engine repeats a top-level exception as an unhandled rejection: said once is enough.
      .replace(/\nAdditionally, some promises were rejected[^]*$/, '');
  } finally {
    process.chdir(cwd);
    rmSync(stage, { recursive: true, force: true });
  }
  if (error !== undefined) fail(`${shown(cwd, join(filter.dir, filter.main))}:\n${error}`);

  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, component);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const mib = (component.length / (1024 * 1024)).toFixed(1);
  console.log(`built ${shown(cwd, out)} (${mib} MiB) from ${shown(cwd, join(filter.dir, filter.main))} in ${seconds} s`);
}

await main();
