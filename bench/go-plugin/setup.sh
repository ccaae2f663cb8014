#!/usr/bin/env bash
# Installs what bench/go-plugin/build.sh needs, from Debian's packages (asks for nothing else;
# the benchmark never runs this itself). Needs root or sudo.
set -euo pipefail
packages=(golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-goprotobuf-dev protobuf-compiler)
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${packages[@]}"
