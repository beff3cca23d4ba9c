#!/usr/bin/env node
// Compiles contracts/*.sol with the pinned npm `solc` (tools/package.json) and writes
// exporter/demo/contracts/build/<Name>.json = {"abi": [...], "bytecode": "0x..."}.
// The build artifacts are committed, so only someone changing a contract needs Node; the
// output is deterministic (fixed compiler, settings, and no metadata hash) so a rebuild of
// unchanged sources gives a byte-identical diff-free result.
// Usage: node scripts/compile_contracts.mjs            (rebuild)
//        node scripts/compile_contracts.mjs --check    (exit 1 if the committed artifacts are stale)
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(path.join(root, 'tools', 'package.json'))
const solc = require('solc')

const sourceDir = path.join(root, 'contracts')
const buildDir = path.join(root, 'exporter', 'demo', 'contracts', 'build')
const check = process.argv.includes('--check')

const sources = {}
for (const file of fs.readdirSync(sourceDir).filter(f => f.endsWith('.sol')).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(sourceDir, file), 'utf8') }
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    // cancun: supported by Polygon PoS and by anvil's default hardfork.
    evmVersion: 'cancun',
    // No IPFS/metadata hash in the bytecode: artifacts then do not change with comments or paths.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
}

const output = JSON.parse(solc.compile(JSON.stringify(input)))
const errors = (output.errors ?? []).filter(e => e.severity === 'error')
for (const e of output.errors ?? []) console.error(e.formattedMessage)
if (errors.length > 0) process.exit(1)

fs.mkdirSync(buildDir, { recursive: true })
let stale = false
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, compiled] of Object.entries(contracts)) {
    const artifact = { abi: compiled.abi, bytecode: '0x' + compiled.evm.bytecode.object }
    const text = JSON.stringify(artifact, null, 2) + '\n'
    const target = path.join(buildDir, `${name}.json`)
    const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : null
    if (current === text) continue
    if (check) {
      console.error(`stale: ${path.relative(root, target)} (from contracts/${file})`)
      stale = true
    } else {
      fs.writeFileSync(target, text)
      console.log(`wrote ${path.relative(root, target)} (solc ${solc.version()})`)
    }
  }
}
if (stale) process.exit(1)
