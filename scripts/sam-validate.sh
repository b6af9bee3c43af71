#!/usr/bin/env bash
# Validate template.yaml with the SAM CLI (schema + cfn-lint) and with cfn-lint on its own
# (every rule, on the template as written, once with the stack's own network and once with
# given subnets), no AWS account, no Docker.
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
# Both branches of the network: no Subnets (the stack makes a VPC, condition CreateNetwork), and
# given subnets and security groups.
"$cfn_lint" template.yaml
echo "cfn-lint: template.yaml is clean (the stack's own network)"
"$cfn_lint" --parameters Subnets=subnet-0a1b2c3d4e5f60001,subnet-0a1b2c3d4e5f60002 \
    SecurityGroups=sg-0a1b2c3d4e5f60001 -- template.yaml
echo "cfn-lint: template.yaml is clean (given subnets and security groups)"
