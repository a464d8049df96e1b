// Validates every manifest in this folder against the Kubernetes API's
// JSON schemas (npm kubernetes-models, which carries them: nothing is
// fetched). Run: node check.mjs [FILE...]; exit 1 on any invalid object.
import { readFileSync, readdirSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const kinds = {
  "v1/Secret": ["kubernetes-models/v1", "Secret"],
  "v1/ConfigMap": ["kubernetes-models/v1", "ConfigMap"],
  "v1/Service": ["kubernetes-models/v1", "Service"],
  "apps/v1/Deployment": ["kubernetes-models/apps/v1", "Deployment"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1", "PodDisruptionBudget"],
};
const here = new URL(".", import.meta.url).pathname;
const files = process.argv.length > 2 ? process.argv.slice(2) : readdirSync(here).filter((f) => f.endsWith(".yaml")).map((f) => here + f);
let bad = 0, n = 0;
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.log(`${file}: ${doc.errors[0].message}`);
      bad++;
      continue;
    }
    const obj = doc.toJS();
    if (!obj) continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const where = `${file}: ${obj.kind} ${obj.metadata?.name ?? "?"}`;
    if (!kinds[key]) {
      console.log(`${where}: no schema known for ${key}`);
      bad++;
      continue;
    }
    const [mod, cls] = kinds[key];
    const Model = (await import(mod))[cls];
    try {
      new Model(obj).validate();
      n++;
    } catch (e) {
      console.log(`${where}: ${e.message}`);
      bad++;
    }
  }
}
console.log(`${n} valid, ${bad} invalid`);
process.exit(bad ? 1 : 0);
