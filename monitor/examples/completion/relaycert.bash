# bash completion for relaycert 0.1.0 (generated from its parser)
_relaycert() {
    local cur prev command opts
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "scan inspect run capture status accept notify-test report renew prune observe demo exchange import init --help --version" -- "$cur") )
        return
    fi
    case "$prev" in
        --config|--connectors|--dir|--domains|--outbound|--output|--password-file|--systemd|-c|-o)
            COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
    esac
    command="${COMP_WORDS[1]}"
    case "$command" in
        scan) opts="--config --endpoint --format --help --legacy-tls --no-store --problems-only" ;;
        inspect) opts="--config --connector --format --help --host --password-env --password-file" ;;
        run) opts="--config --help --once" ;;
        capture) opts="--config --endpoint --format --help --no-store --once --timeout --token" ;;
        status) opts="--config --format --help" ;;
        accept) opts="--config --help" ;;
        notify-test) opts="--channel --config --help" ;;
        report) opts="--config --format --help --output --period" ;;
        renew) opts="--config --dry-run --endpoint --force --help --next-key" ;;
        prune) opts="--config --dry-run --help --older-than" ;;
        observe) opts="--config --format --help --since" ;;
        demo) opts="--dir --format --help" ;;
        exchange) opts="--config --format --help" ;;
        import) opts="--connectors --domains --help --outbound" ;;
        init) opts="--help --output --systemd" ;;
        *) opts="" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts --help" -- "$cur") )
}
complete -F _relaycert relaycert
complete -F _relaycert check_relaycert
