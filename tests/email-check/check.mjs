// Compiles an MJML file with mjml, runs caniemail's checker on it and on
// gazette's digest HTML for the clients subscribers use, and prints one JSON
// object: {gazette: {html?, findings}, mjml: {html, findings}}, where findings
// are [{feature, support: "none"|"partial", clients: [...], notes: [...]}].
//
//   node check.mjs DIGEST.html TWIN.mjml OUT_MJML.html
import fs from 'node:fs';
import { caniemail } from 'caniemail';
import mjml2html from 'mjml';

export const CLIENTS = [
  'gmail.*',
  'outlook.windows',
  'outlook.windows-mail',
  'outlook.macos',
  'apple-mail.macos',
  'apple-mail.ios',
  'yahoo.*',
  'samsung-email.android',
];

function findings(html) {
  const result = caniemail({ clients: CLIENTS, html });
  const byFeature = new Map();
  for (const kind of ['errors', 'warnings']) {
    const perClient = result.issues[kind] || {};
    const entries = perClient instanceof Map ? perClient.entries() : Object.entries(perClient);
    for (const [client, issues] of entries) {
      for (const issue of issues) {
        const support = issue.support === 'none' ? 'none' : 'partial';
        const key = `${support}\u0000${issue.title}`;
        if (!byFeature.has(key)) byFeature.set(key, { feature: issue.title, support, clients: new Set(), notes: new Set() });
        const f = byFeature.get(key);
        f.clients.add(client);
        for (const n of issue.notes || []) f.notes.add(n);
      }
    }
  }
  return [...byFeature.values()]
    .map((f) => ({ ...f, clients: [...f.clients].sort(), notes: [...f.notes] }))
    .sort((a, b) => a.support.localeCompare(b.support) || a.feature.localeCompare(b.feature));
}

const [digestPath, mjmlPath, mjmlOut] = process.argv.slice(2);
const digest = fs.readFileSync(digestPath, 'utf8');
const compiled = (await mjml2html(fs.readFileSync(mjmlPath, 'utf8'), { validationLevel: 'strict' }));
if (compiled.errors && compiled.errors.length) {
  console.error(JSON.stringify(compiled.errors, null, 2));
  process.exit(2);
}
fs.writeFileSync(mjmlOut, compiled.html);
console.log(JSON.stringify({
  gazette: { findings: findings(digest) },
  mjml: { findings: findings(compiled.html) },
}));
