# shellcheck shell=bash
# Sourced by launch/common.sh and launch/slurm/train.sbatch (LAUNCHER=deepspeed): defines pdsh_safe_arguments only.
# SCRIPT_NAME names the script in its messages (default: the running script's file name).

# pdsh_safe_arguments ARG...: with several hosts (HOSTS, read_hostfile) DeepSpeed's runner starts every node over
# pdsh, through a remote shell: `cd <this folder>; <python> -u -m deepspeed.launcher.launch ... ARG...`, the folder
# unquoted and an argument double-quoted only when it holds a space. Refuses (exit 2) what that shell would change: a
# folder with spaces or shell characters (the `cd` failed and the ranks ran in the home folder), an argument with
# $, ` or \ (expanded even in the quotes), and one without a space with ; & | < > ( ) ' " or a {a,b} brace expansion.
pdsh_safe_arguments() {
  (( ${#HOSTS[@]} > 1 )) || return 0
  local me arg plain='^[A-Za-z0-9_./+,:@%=~-]+$' braces='\{[^}]*(,|\.\.)[^}]*\}'
  me=${SCRIPT_NAME:-$(basename "$0")}
  [[ "$PWD" =~ $plain ]] || { echo "$me: DeepSpeed's multi-node launcher runs 'cd $PWD' unquoted on every node" \
                                   "(a remote shell): run it from a folder whose path has no spaces or shell" \
                                   "characters" >&2; exit 2; }
  for arg in "$@"; do
    if [[ "$arg" == *[\$\`\\[:cntrl:]]* ]] \
       || { [[ "$arg" != *" "* ]] && { [[ "$arg" == *[\;\&\|\<\>\(\)\'\"]* ]] || [[ "$arg" =~ $braces ]]; }; }; then
      echo "$me: '$arg' would be changed by the remote shell DeepSpeed's multi-node launcher passes the arguments" \
           "through (pdsh): leave out \$, \`, \\ and, in a value without spaces, ; & | < > ( ) ' \" and {a,b};" \
           "or set it in the config file" >&2
      exit 2
    fi
  done
}
