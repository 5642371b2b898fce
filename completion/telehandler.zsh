#compdef telehandler
# zsh completion for telehandler: telehandler completion zsh > "${fpath[1]}/_telehandler",
# or source <(telehandler completion zsh) after compinit.
_telehandler() {
  local -a opts
  local cur=${words[-1]}
  # After "--" come a job's command and arguments: complete files, run nothing.
  if (( ${words[(I)--]} )); then
    _files
    return
  fi
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "${funcstack[1]}" == "_telehandler" ]]; then
  _telehandler "$@"
else
  compdef _telehandler telehandler
fi
