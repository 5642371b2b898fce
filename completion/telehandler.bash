# bash completion for telehandler: source <(telehandler completion bash)
_telehandler() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local w opts
  COMPREPLY=()
  # After "--" come a job's command and arguments: complete files, run nothing.
  for w in "${words[@]:1}"; do
    [[ "$w" == "--" ]] && return 1
  done
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _telehandler telehandler
