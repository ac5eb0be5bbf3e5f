#!/bin/sh
# Stand-in for `cdk deploy echoes-$STACK-$ENV`: records the order stacks
# were deployed in, which is what the pipeline must get right.
set -eu
echo "deployed echoes-$1-$2" | tee -a "${STACK_LOG:-/dev/null}"
