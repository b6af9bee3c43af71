#!/usr/bin/env bash
# One command from a clone to a running Switchboard stack in your AWS account:
#   scripts/deploy.sh [--guided] [--stack-name NAME] [--region REGION] [--platform PLATFORM]
#                     [--skip-image] [-- SAM_DEPLOY_ARGS...]
# 1. builds every function for Lambda (scripts/sam-build.sh: cargo-lambda, arm64),
# 2. deploys the stack with `sam deploy` (--guided on first use, when samconfig.toml has no
#    parameter overrides yet; later runs reuse what the guided run saved),
# 3. builds the SFU image (sfu/Dockerfile) and pushes it to the ECR repository the stack owns
#    (scripts/sfu-image.sh), tagged with the commit, and points the stack at it,
# 4. prints the HTTP API and WebSocket URLs and the dashboard.
# Safe to run again: an unchanged commit pushes nothing new and deploys no change.
# Needs AWS credentials (any the AWS CLI reads) and, for the image, docker with buildx.
# Options:
#   --guided          ask for the parameters (HostKeys, TurnSecret, ...) even if saved before
#   --stack-name N    stack name (default: samconfig.toml's, "switchboard")
#   --region R        region (default: samconfig.toml's, or AWS_REGION)
#   --platform P      SFU image platform: linux/arm64 (default, SfuCpuArchitecture ARM64) or
#                     linux/amd64 (X86_64)
#   --skip-image      deploy without building or pushing the SFU image
#   -h, --help        this text (works without credentials)
# Arguments after -- go to `sam deploy` as they are (e.g. --parameter-overrides WarmRooms=2).
set -euo pipefail

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

guided=""
stack=""
region=""
platform="linux/arm64"
skip_image=""
sam_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --guided) guided=1; shift ;;
    --skip-image) skip_image=1; shift ;;
    --stack-name | --region | --platform)
      [ $# -ge 2 ] || { echo "deploy.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --stack-name) stack="$2" ;;
        --region) region="$2" ;;
        --platform) platform="$2" ;;
      esac
      shift 2 ;;
    --) shift; sam_args=("$@"); break ;;
    *) echo "deploy.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$platform" in
  linux/arm64) architecture=ARM64 ;;
  linux/amd64) architecture=X86_64 ;;
  *) echo "deploy.sh: --platform is linux/arm64 or linux/amd64, not $platform" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
stack="${stack:-$(sed -n 's/^stack_name = "\(.*\)"/\1/p' samconfig.toml | head -n 1)}"
stack="${stack:-switchboard}"
region="${region:-${AWS_REGION:-$(sed -n 's/^region = "\(.*\)"/\1/p' samconfig.toml | head -n 1)}}"

# The SAM CLI and the AWS CLI, in the venv scripts/sam-build.sh makes (installed on first use).
venv="${SWITCHBOARD_CACHE_DIR:-.cache}/lambda-venv"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
echo "== build the functions (scripts/sam-build.sh)"
scripts/sam-build.sh
if [ ! -x "$venv/bin/aws" ]; then
  "$venv/bin/pip" install --quiet awscli
fi
# SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS: as in scripts/sam-build.sh (the template's Fn::ForEach).
export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0 SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1 AWS_REGION="$region"

if ! aws sts get-caller-identity >/dev/null; then
  echo "deploy.sh: no AWS credentials (aws sts get-caller-identity failed); configure them first" >&2
  exit 1
fi

output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text 2>/dev/null
}
tag="$(git rev-parse --short=12 HEAD)"
[ -z "$(git status --porcelain -- sfu Cargo.toml Cargo.lock)" ] || tag="$tag-dirty-$(date +%s)"
deploy() {
  local args=(--stack-name "$stack" --region "$region" --no-fail-on-empty-changeset)
  if [ -n "$guided" ] || ! grep -q '^parameter_overrides' samconfig.toml; then
    args+=(--guided)
    guided=""
  fi
  sam deploy "${args[@]}" --parameter-overrides "SfuImageTag=$1" "SfuCpuArchitecture=$architecture" \
    "${sam_args[@]}"
}

repository="$(output SfuRepositoryUri || true)"
if [ -z "$skip_image" ] && [ -n "$repository" ] && [ "$repository" != None ]; then
  # The stack and its repository exist: push first, so the new task definition's image is there.
  echo "== SFU image $repository:$tag"
  scripts/sfu-image.sh --platform "$platform" --tag "$tag" --push "$repository"
  echo "== sam deploy ($stack, $region)"
  deploy "$tag"
else
  echo "== sam deploy ($stack, $region)"
  deploy "$tag"
  if [ -z "$skip_image" ]; then
    repository="$(output SfuRepositoryUri)"
    echo "== SFU image $repository:$tag"
    scripts/sfu-image.sh --platform "$platform" --tag "$tag" --push "$repository"
  fi
fi

echo
echo "HTTP API:  $(output HttpApiUrl)"
echo "WebSocket: $(output WebSocketUrl)"
echo "Dashboard: $(output DashboardUrl)"
