# bash completion for xenstack's xe.  Source it, or install it as
# /etc/bash_completion.d/xe.  Command names come from `xe help --all --minimal` (asked once per
# shell); parameter names from `xe help <command>`.

_xe_commands=""

_xe_params() {
    xe help "$1" 2>/dev/null | sed -n 's/^ *\(reqd\|optional\) params *: *//p' \
        | tr ',' '\n' | sed 's/^ *//; /^</d; /^$/d'
}

_xe() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        if [ -z "$_xe_commands" ]; then
            _xe_commands="$(xe help --all --minimal 2>/dev/null | tr ',' ' ')"
        fi
        COMPREPLY=($(compgen -W "$_xe_commands help" -- "$cur"))
        return 0
    fi
    local cmd="${COMP_WORDS[1]}"
    if [ "$cmd" = "help" ]; then
        COMPREPLY=($(compgen -W "$(xe help --all --minimal 2>/dev/null | tr ',' ' ') --all" -- "$cur"))
        return 0
    fi
    case "$cur" in
        *=*) COMPREPLY=(); return 0 ;;
        --*) COMPREPLY=($(compgen -W "--minimal --force --multiple --all" -- "$cur")); return 0 ;;
    esac
    local words p
    words=""
    for p in $(_xe_params "$cmd"); do
        case "$p" in
            *:) words="$words $p" ;;
            *) words="$words $p=" ;;
        esac
    done
    compopt -o nospace 2>/dev/null
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -F _xe xe
