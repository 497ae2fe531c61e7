"""What ``Console.run_command`` makes of a guest console's text: the command's output alone,
whatever the tty's echo and the lines written meanwhile did to it."""

from __future__ import annotations

from xenstack.testing.guests import _output

ECHO = "echo awake; echo XQ-END-$((1+0))ab12cd34"


def test_the_echo_goes_and_the_output_stays() -> None:
    assert _output(f"{ECHO}\r\nawake\r\n", "))ab12cd34") == "awake\r\n"


def test_a_tick_glued_to_the_echo_takes_the_echos_line_end_with_it() -> None:
    text = f"{ECHO}XQ-TICK 7 12.5\n\nawake\n"
    assert _output(text, "))ab12cd34") == "awake\n"


def test_noise_lines_amid_the_output_go() -> None:
    text = f"{ECHO}\nawake\nXSG-DHCP renewed\nXQ-TICK 8 12.6\nagain\n"
    assert _output(text, "))ab12cd34") == "awake\nagain\n"


def test_a_blank_line_the_command_printed_stays() -> None:
    assert _output(f"{ECHO}\n\nawake\n", "))ab12cd34") == "\nawake\n"
