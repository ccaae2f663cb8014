#!/bin/sh
# Judges the two plugins written on existing JSON-RPC libraries (vscode-jsonrpc 10 for Node,
# python-lsp-jsonrpc 1.1.2 for Python). The libraries are installed into a temporary directory
# outside the repository, never into it; CI does not run this (it needs the package registries).
#
#   conformance/libraries/run.sh [judge options...]     e.g. --tier core, --format json
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-libraries.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "installing vscode-jsonrpc@10 and python-lsp-jsonrpc==1.1.2 into $tmp" >&2
npm install --silent --prefix "$tmp/node" vscode-jsonrpc@10 >&2
python3 -m pip install --quiet --target "$tmp/py" python-lsp-jsonrpc==1.1.2 >&2
cd "$root"
cargo build --release --quiet -p tether-conformance
NODE_PATH="$tmp/node/node_modules" PYTHONPATH="$tmp/py" target/release/tether-conformance \
    --plugin "node $here/vscode-jsonrpc-plugin.cjs" \
    --plugin "python3 $here/python-lsp-jsonrpc-plugin.py" "$@"
