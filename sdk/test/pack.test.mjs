// `npm pack` gives a package that installs in a fresh folder and imports there, every export
// that dist/index.d.ts declares a value of, with its types shipped.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const sdk = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The value exports of the entry point, read from its declarations (types are not values). */
function declaredValues() {
  const names = new Set();
  const read = (file) => {
    const text = readFileSync(path.join(sdk, 'dist', file), 'utf8');
    for (const [, list, from] of text.matchAll(/export \{([^}]*)\} from '\.\/([^']+)\.js'/g)) {
      for (const item of list.split(',').map((s) => s.trim()).filter(Boolean)) if (!item.startsWith('type ')) names.add(item);
      void from;
    }
    for (const [, from] of text.matchAll(/export \* from '\.\/([^']+)\.js'/g)) {
      const inner = readFileSync(path.join(sdk, 'dist', `${from}.d.ts`), 'utf8');
      for (const [, name] of inner.matchAll(/export declare (?:const|function|class) (\w+)/g)) names.add(name);
    }
  };
  read('index.d.ts');
  return [...names].sort();
}

test('npm pack installs in a fresh folder and imports every export', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'switchboard-client-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: sdk, encoding: 'utf8' }).trim().split('\n').pop();
    const tarball = path.join(work, out);
    assert.ok(existsSync(tarball), `npm pack wrote no ${tarball}`);
    const app = path.join(work, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', '--offline', tarball], { cwd: app, stdio: 'pipe' });
    const installed = path.join(app, 'node_modules/switchboard-client');
    const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8'));
    assert.deepEqual(manifest.dependencies ?? {}, {}, 'the package has runtime dependencies');
    assert.ok(existsSync(path.join(installed, 'dist/index.d.ts')), 'no .d.ts in the package');
    assert.ok(!existsSync(path.join(installed, 'src')), 'the package ships its sources');
    const expected = declaredValues();
    assert.ok(expected.length >= 15, `only ${expected.length} exports declared: ${expected}`);
    const script = `import * as sdk from 'switchboard-client';
      const want = ${JSON.stringify(expected)};
      const missing = want.filter((n) => sdk[n] === undefined);
      if (missing.length) { console.error('missing: ' + missing.join(', ')); process.exit(1); }
      const sb = new sdk.Switchboard({ apiUrl: 'http://127.0.0.1:9' });
      console.log(JSON.stringify({ count: Object.keys(sdk).length, apiUrl: sb.apiUrl }));`;
    const result = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: app, encoding: 'utf8' }));
    assert.equal(result.apiUrl, 'http://127.0.0.1:9');
    assert.ok(result.count >= expected.length);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
