#!/usr/bin/env bash
# `hangar validate` on the real `.github/workflows` (and local actions'
# `.github/actions/**/action.yml`) of public repositories,
# each pinned to a commit: prints files checked, errors and warnings per
# repository, then every error and warning, to be read one by one (a real
# mistake in the workflow, or a false report of ours). The bar is zero false
# errors; warnings are classified true or noise in the issue note.
# Not run in CI (it needs the network). A WORKDIR that already holds
# OWNER+NAME/.github/workflows for a repository is used as it is.
# Usage: benches/validate-real-workflows.sh [WORKDIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cargo build -q -p hangar --manifest-path "$root/Cargo.toml"
HANGAR="$root/target/debug/hangar"

# owner/name@commit (the commit the figures in the issue note were taken at).
REPOS="
  actions/runner@258d6c857db3519913f7deb6004b60172f8043ae
  ajeetdsouza/zoxide@e3ef7c9b41e38aff62dd68fcb920a9765e46aa71
  alacritty/alacritty@bdb72b32eeb074e3a0b8559d8ccac458237474a3
  astral-sh/ruff@fca5c7cf2cd2f8338f18b9485f936b8e9f07bd0b
  astral-sh/uv@26a9dd4b2125bc271b47855e1fa0c49af3365db5
  BurntSushi/ripgrep@3fce3b5bb0236da2df6d99672afb8a719642eca7
  casey/just@4f41f609278edb6f1024e3dd7a9912946e1e7bc3
  clap-rs/clap@6982fb1c98c7247e38a6d4f04191b94e30497e7b
  cli/cli@44ee17760709bedf1cad7e452e61751489b81a33
  denoland/deno@98f9507affc905f088124891add3a8dd63b91f77
  encode/httpx@ae1b9f66238f75ced3ced5e4485408435de10768
  eza-community/eza@eed27ed05e74542af5852aed40e3dbff87d69c43
  fastapi/fastapi@c3f316b7e814667e8ee81e03a7330d00ee61e45c
  gohugoio/hugo@7b5199fdeff7d7682e9f979f468d55bc7b67b934
  golangci/golangci-lint@6fb5dee3889d231640dce56e5e71c522f13aef7e
  hashicorp/terraform@883c7221ee2e0bc2fad6912fd4b3cc4b53a598a7
  hyperium/hyper@8fcaf1a62787b824fdd7b95a3e7c9ea81acd3449
  junegunn/fzf@956562daaa82ddf55ea8f7aeab56883377b742c6
  nektos/act@bd86152165b976e89c24093ceb039d732b5ed95f
  numpy/numpy@1f90bbb55e65e7de68921bc3f1a2d94492fdf689
  open-policy-agent/conftest@6a3fd606993c1003de444a0ea93c7e916b845d4c
  pallets/click@2c8cd3ac958a7eb316d67f2d316c27086c4c0369
  pallets/flask@2ac89889f4cc330eabd50f295dcef02828522c69
  pola-rs/polars@4db92c12c08c390f95b517a00ae0afe818e1abf6
  prometheus/prometheus@d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86
  psf/black@8947c48ef2077c3a301b03c1e814dc2e3f78436e
  psf/requests@1f6589ec3a1ee910f9a65cc3ceac60b26677bc0e
  pydantic/pydantic@2151025aa51263f3016502b00010b78e4481eaa1
  pypa/cibuildwheel@8832cf6b75594121646ec4e32692cc0ea3899f83
  pypa/pip@6d309205789d368b2749d93fd6193d584811efd5
  pytest-dev/pytest@df87db7b0462fb764ef73fa00561adf8ad047572
  python-poetry/poetry@f46702336862f30050d5c641d5ed6f7568ded793
  rust-lang/cargo@af373f761aa4e42b093c2e453078fd73c8ce54dd
  rust-lang/rust-analyzer@d2e55da49132fa70a13dfbdc99122432b02cf464
  rust-lang/rust-clippy@e57f468d8f079a7b50627a95121fd16fff8e5bfa
  rust-lang/rustfmt@1191d91d83f5582766404b4e912d19cd89866d56
  rust-lang/rustup@0878429a3d0868928cb57085332854e183f9fcfe
  serde-rs/serde@1023d077510b4aef36a41ef56fdb7798568a2654
  sharkdp/bat@2ba8db9c14e5794572f5ea338c2b90404c9769cb
  sharkdp/fd@ee20f426ddf338ac7ead5c5f00ea49258005caaf
  starship/starship@6f33dcec91b758ccbae4ed850eaa6feabff798f9
  sveltejs/svelte@15720b16a5ef33e3e1f4301c77b94ec375070e73
  tauri-apps/tauri@a8105eccb2122f003b4a36bbfb747998f53c5f10
  tokio-rs/axum@3d78036dcac289d6c1d54934708acb6a5bd73686
  tokio-rs/tokio@ea91b33ca57ff0581b38e735cc108f831bccbdaa
  tokio-rs/tracing@f40ccdaa03cf114c7ee1ef14949207626bf6be57
  vitejs/vite@a98c8d95d552c6fa98ab66fb810f5b39ad5abf49
"

files=0
errors=0
warnings=0
for spec in $REPOS; do
  repo=${spec%@*} commit=${spec#*@}
  dir="$work/${repo//\//+}"
  if [ ! -d "$dir/.github/workflows" ]; then
    rm -rf "$dir.git"
    git init -q --bare "$dir.git"
    git --git-dir="$dir.git" fetch -q --depth 1 --filter=blob:none "https://github.com/$repo" "$commit"
    mkdir -p "$dir"
    git --git-dir="$dir.git" archive "$commit" .github/workflows | tar -x -C "$dir"
    # Local composite actions are checked too (steps.X, inputs.X).
    if git --git-dir="$dir.git" cat-file -e "$commit:.github/actions" 2>/dev/null; then
      git --git-dir="$dir.git" archive "$commit" .github/actions | tar -x -C "$dir"
    fi
  fi
  n=$(find "$dir/.github/workflows" -maxdepth 1 -name '*.y*ml' | wc -l)
  a=$( (find "$dir/.github/actions" -maxdepth 4 -name 'action.y*ml' 2>/dev/null || true) | wc -l)
  n=$((n + a))
  out=$(cd "$dir" && "$HANGAR" validate 2>&1 || true)
  e=$(grep -c ': error:' <<<"$out" || true)
  w=$(grep -c ': warning:' <<<"$out" || true)
  printf '%-40s %4d files %4d errors %4d warnings\n' "$repo" "$n" "$e" "$w"
  files=$((files + n))
  errors=$((errors + e))
  warnings=$((warnings + w))
  grep -E ': (error|warning):' <<<"$out" | sed "s|^|    $repo: |" || true
done
echo "total: $files files, $errors errors, $warnings warnings"
