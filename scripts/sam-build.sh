#!/usr/bin/env bash
# Builds every function for Lambda (arm64, provided.al2023) with `sam build` and cargo-lambda,
# as a deploy would. Not part of scripts/test.sh: on 2 cores it takes about 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-lambda (scripts/ensure-cargo-lambda.sh) and the SAM CLI, in one venv in the cache.
bin="$(scripts/ensure-cargo-lambda.sh)"
[[ -x "$bin/sam" ]] || "$bin/pip" install --quiet aws-sam-cli
# cargo-lambda runs zig through the first python3 on PATH: the venv's, which has ziglang.
# template.yaml uses Fn::ForEach (AWS::LanguageExtensions): recent SAM CLIs expand it locally
# only when asked, and fail on the template otherwise.
export PATH="$bin:$PATH" SAM_CLI_TELEMETRY=0 SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1

sam build --beta-features
find .aws-sam/build -name bootstrap -exec ls -l {} +
