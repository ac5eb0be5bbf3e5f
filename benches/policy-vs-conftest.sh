#!/usr/bin/env bash
# `hangar scan policy` on conftest's own examples, side by side with what
# conftest's acceptance tests (acceptance.bats) expect: exit status and, where
# the test pins it, the summary line or a message. conftest is not installed:
# the expectations are the ones its repository asserts.
#   bash benches/policy-vs-conftest.sh CONFTEST_CHECKOUT
# CONFTEST_CHECKOUT: a checkout of github.com/open-policy-agent/conftest.
set -uo pipefail
cd "$(dirname "$0")/.."
CT=${1:?usage: policy-vs-conftest.sh CONFTEST_CHECKOUT}
cargo build -q -p hangar || { echo "build failed" >&2; exit 1; }
HANGAR=$PWD/target/debug/hangar
cd "$CT"

# acceptance.bats reads examples/hcl2 through a symlinked directory.
HCL2_LINK=$(mktemp -u); ln -s "$PWD/examples/hcl2" "$HCL2_LINK"
trap 'rm -f "$HCL2_LINK"' EXIT

pass=0; total=0
# case | expected exit | expected text in output ("" for none) | arguments
while IFS='|' read -r name want_rc want_text args; do
  [ -z "$name" ] && continue
  total=$((total + 1))
  # shellcheck disable=SC2086
  out=$(eval "$HANGAR scan policy --no-bundled $args" 2>&1); rc=$?
  ok=yes
  [ "$rc" = "$want_rc" ] || ok=no
  if [ -n "$want_text" ] && ! grep -qF -- "$want_text" <<<"$out"; then ok=no; fi
  got=$(grep -E '^[0-9]+ tests?, ' <<<"$out" | head -1)
  [ "$ok" = yes ] && pass=$((pass + 1))
  printf '%-44s | exit %s (conftest %s) | %-58s | %s\n' "$name" "$rc" "$want_rc" "${got:-${out%%$'\n'*}}" "$ok"
done <<'CASES'
kubernetes deployment (4 failures)|1|5 tests, 1 passed, 0 warnings, 4 failures, 0 exceptions|-p examples/kubernetes/policy examples/kubernetes/deployment.yaml --all-namespaces
kubernetes service (warning)|0|5 tests, 4 passed, 1 warning, 0 failures, 0 exceptions|-p examples/kubernetes/policy examples/kubernetes/service.yaml
service --fail-on-warn|1||--fail-on-warn -p examples/kubernetes/policy examples/kubernetes/service.yaml
service from stdin|0||-p examples/kubernetes/policy - < examples/kubernetes/service.yaml
deployment + service|1||-p examples/kubernetes/policy examples/kubernetes/deployment.yaml examples/kubernetes/service.yaml
multiple input types|0|Found service hello-kubernetes but services are not allowed|examples/traefik/traefik.toml examples/kubernetes/service.yaml -p examples/kubernetes/policy
exceptions|1|2 tests, 0 passed, 0 warnings, 1 failure, 1 exception|-p examples/exceptions/policy examples/exceptions/deployments.yaml
exceptions output|1|EXCP - examples/exceptions/deployments.yaml - main - data.main.exception[_][_] == "run_as_root"|-p examples/exceptions/policy examples/exceptions/deployments.yaml
docker --all-namespaces|1|unallowed commands found ["apk add --no-cache python3 python3-dev build-base && pip3 install awscli==1.18.1"]|-p examples/docker/policy examples/docker/Dockerfile --all-namespaces
docker namespace main literally|1|unallowed image found ["openjdk:8-jdk-alpine"]|-p examples/docker/policy examples/docker/Dockerfile --namespace main
docker namespace '*'|1|unallowed commands found|-p examples/docker/policy examples/docker/Dockerfile --namespace '*'
docker namespace 'c*'|1|unallowed commands found|-p examples/docker/policy examples/docker/Dockerfile --namespace 'c*'
configfile (conftest.toml)|1|Containers must not run as root|-c examples/configfile/conftest.toml -p examples/configfile/test examples/configfile/deployment.yaml
data directory|1|Cannot expose port|-p examples/data/policy -d examples/data/exclusions examples/data/service.yaml
toml (traefik)|1||-p examples/traefik/policy examples/traefik/traefik.toml
xml (pom.xml)|1|--- maven-plugin must have the version: 3.6.1|-p examples/xml/policy examples/xml/pom.xml
ini (grafana)|1|Users should verify their e-mail address|-p examples/ini/policy examples/ini/grafana.ini
ini from stdin --parser ini|1|Users should verify their e-mail address|-p examples/ini/policy --parser ini - < examples/ini/grafana.ini
properties|0||-p examples/properties/policy/ examples/properties/sample.properties
dotenv|0||-p examples/dotenv/policy/ examples/dotenv/sample.env
compose (non-conforming)|1|2 tests, 0 passed, 0 warnings, 2 failures, 0 exceptions|-p examples/compose/policy examples/compose/docker-compose.yml
compose (conforming)|0|2 tests, 2 passed, 0 warnings, 0 failures, 0 exceptions|-p examples/compose/policy examples/compose/docker-compose-valid.yml
combine yaml files|1|2 tests, 1 passed, 0 warnings, 1 failure|-p examples/combine/policy examples/combine/team.yaml examples/combine/user1.yaml examples/combine/user2.yaml --combine
hcl2 (terraform)|1|ALB `my-alb-listener` is using HTTP rather than HTTPS|-p examples/hcl2/policy examples/hcl2/terraform.tf
hcl2 symlinked directory|1|10 tests, 3 passed, 0 warnings, 7 failures, 0 exceptions|-p examples/hcl2/policy "$HCL2_LINK"
CASES

echo
echo "scan policy: $pass of $total conftest acceptance expectations met"

vpass=0; vtotal=0
while IFS='|' read -r name want_rc want_text args; do
  [ -z "$name" ] && continue
  vtotal=$((vtotal + 1))
  # shellcheck disable=SC2086
  out=$(eval "$HANGAR scan policy verify $args" 2>&1); rc=$?
  ok=yes
  [ "$rc" = "$want_rc" ] || ok=no
  if [ -n "$want_text" ] && ! grep -qF -- "$want_text" <<<"$out"; then ok=no; fi
  [ "$ok" = yes ] && vpass=$((vpass + 1))
  printf '%-44s | exit %s (conftest %s) | %-58s | %s\n' "$name" "$rc" "$want_rc" "$(tail -1 <<<"$out")" "$ok"
done <<'CASES'
verify kubernetes|0|4 tests, 4 passed|-p examples/kubernetes/policy
verify namespace 'ma*'|0|4 tests, 4 passed|-p examples/kubernetes/policy --namespace 'ma*'
verify namespace doesnotexist|0|0 tests, 0 passed|-p examples/kubernetes/policy --namespace doesnotexist
verify traefik (failing test)|1||-p examples/traefik/policy
verify with data|0|1 test, 1 passed|-p examples/data/policy -d examples/data/exclusions
verify report fail|1|data.main.test_missing_required_label_fail|-p examples/report/policy -p examples/report/fail
CASES
echo "verify: $vpass of $vtotal conftest acceptance expectations met"
