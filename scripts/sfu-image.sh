#!/usr/bin/env bash
# Builds the SFU's container image (sfu/Dockerfile) with docker buildx and, given an ECR
# repository, pushes it there: the image to give the stack's SfuImage parameter.
#   scripts/sfu-image.sh [--platform linux/arm64|linux/amd64|linux/arm64,linux/amd64]
#                        [--tag TAG] [--push REPOSITORY_URI]
# Without --push it builds for one platform and loads the image into the local docker as
# switchboard-sfu:TAG. With --push it logs in to the repository's registry (aws ecr
# get-login-password), builds every platform given and pushes REPOSITORY_URI:TAG, and prints
# that image reference (set SfuImage to it, and SfuCpuArchitecture to match the platform).
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

platform="linux/arm64"
tag="latest"
push=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --platform|--tag|--push)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      case "$1" in
        --platform) platform="$2" ;;
        --tag) tag="$2" ;;
        --push) push="$2" ;;
      esac
      shift 2 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 1; }
docker buildx version >/dev/null 2>&1 || { echo "docker buildx is not available" >&2; exit 1; }

if [ -z "$push" ]; then
  case "$platform" in
    *,*) echo "a local build (no --push) loads one platform; give one to --platform" >&2; exit 2 ;;
  esac
  docker buildx build --platform "$platform" -f sfu/Dockerfile -t "switchboard-sfu:$tag" --load .
  echo "switchboard-sfu:$tag"
  exit 0
fi

# REPOSITORY_URI: <account>.dkr.ecr.<region>.amazonaws.com/<name>
registry="${push%%/*}"
region=$(printf '%s' "$registry" | sed -n 's/^[0-9]*\.dkr\.ecr\.\([a-z0-9-]*\)\.amazonaws\.com.*/\1/p')
if [ -n "$region" ]; then
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
fi
docker buildx build --platform "$platform" -f sfu/Dockerfile -t "$push:$tag" --push .
echo "$push:$tag"
