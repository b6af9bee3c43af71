#!/usr/bin/env bash
# Validate template.yaml with the SAM CLI (schema + cfn-lint) and with cfn-lint on its own
# (every rule, on the template as written), no AWS account, no Docker.
# Installs the SAM CLI and cfn-lint into .cache/sam-venv on first use; later runs reuse them.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv="${SWITCHBOARD_CACHE_DIR:-.cache}/sam-venv"
sam="$venv/bin/sam"
cfn_lint="$venv/bin/cfn-lint"

if [[ ! -x "$sam" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet aws-sam-cli
fi
# The SAM CLI brings cfn-lint along; a venv from before it did gets it here.
if [[ ! -x "$cfn_lint" ]]; then
    "$venv/bin/pip" install --quiet cfn-lint
fi

# No telemetry, and no credentials needed: validate --lint runs offline.
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=us-east-1

"$sam" --version
"$sam" validate --lint --template template.yaml --region us-east-1
"$cfn_lint" --version
"$cfn_lint" template.yaml
echo "cfn-lint: template.yaml is clean"
