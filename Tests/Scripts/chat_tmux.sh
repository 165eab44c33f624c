#!/usr/bin/env bash
# `malrun chat` in a real terminal (tmux): two turns, the second running only its new tokens
# (the conversation stays in the KV cache), Ctrl-C stopping an answer without ending the chat,
# /reset, /exit.   Usage: Tests/Scripts/chat_tmux.sh MALRUN_BIN [MODEL]
set -euo pipefail
BIN=$(realpath "$1")
MODEL=${2:-Samples/llama3-fortunes}
SESSION=malrun-chat-check-$$
command -v tmux >/dev/null || { SUDO=$( [ "$(id -u)" = 0 ] || echo sudo ); $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux; }
fail() { echo "FAIL: $1"; echo "--- screen:"; tmux capture-pane -p -t "$SESSION" -S -200 || true; tmux kill-session -t "$SESSION" 2>/dev/null; exit 1; }
screen() { tmux capture-pane -p -J -t "$SESSION" -S -2000; }
# Waits until the screen shows $2 lines matching $1.
wait_for() {
    for _ in $(seq 1 600); do
        [ "$(screen | grep -c -- "$1" || true)" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "timed out waiting for $2 x '$1'"
}
# Sends Ctrl-C as soon as the answer has streamed ~200 characters: a fixed sleep raced a fast
# build, which finished all 1500 tokens within the second it waited.
interrupt_answer() {
    local base
    base=$(screen | wc -c)
    for _ in $(seq 1 600); do
        [ "$(screen | wc -c)" -gt $((base + 200)) ] && break
        sleep 0.02
    done
    tmux send-keys -t "$SESSION" C-c
}
tmux new-session -d -s "$SESSION" -x 160 -y 50 "$BIN chat $MODEL --threads 2 -n 1500; echo CHAT-ENDED; sleep 30"
wait_for '^> ' 1
# Turn 1: a long answer, stopped by Ctrl-C.
tmux send-keys -t "$SESSION" "The secret of success is" Enter
interrupt_answer
wait_for '^\[prompt' 1
screen | grep '^\[prompt' | tail -1 | grep -q 'stopped' || fail "Ctrl-C did not stop the first answer"
first=$(screen | grep '^\[prompt' | tail -1 | sed -E 's/^\[prompt ([0-9]+) new tokens.*answer ([0-9]+) tokens.*/\1 \2/')
wait_for '^> ' 2
# Turn 2: only its new tokens run.
tmux send-keys -t "$SESSION" "And failure?" Enter
interrupt_answer
wait_for '^\[prompt' 2
second=$(screen | grep '^\[prompt' | tail -1 | sed -E 's/^\[prompt ([0-9]+) new tokens.*/\1/')
read -r p1 a1 <<< "$first"
[ "$second" -lt 10 ] && [ "$a1" -gt 10 ] || fail "turn 2 ran $second prompt tokens after a $p1-token prompt and a $a1-token answer"
screen | grep -q CHAT-ENDED && fail "Ctrl-C ended the chat"
# /reset: the next turn runs its whole prompt again.
tmux send-keys -t "$SESSION" "/reset" Enter
wait_for 'conversation forgotten' 1
tmux send-keys -t "$SESSION" "The secret of success is" Enter
interrupt_answer
wait_for '^\[prompt' 3
third=$(screen | grep '^\[prompt' | tail -1 | sed -E 's/^\[prompt ([0-9]+) new tokens.*/\1/')
[ "$third" -eq "$p1" ] || fail "after /reset the prompt ran $third tokens, not $p1"
tmux send-keys -t "$SESSION" "/exit" Enter
wait_for CHAT-ENDED 1
tmux kill-session -t "$SESSION"
echo "chat check: turn 1 $p1 prompt tokens + $a1 answer tokens (stopped by Ctrl-C); turn 2 ran $second new tokens; /reset ran $third; /exit"
