"""warm_start.misconception: multiplication steps written off by one, the chain consistent from there."""

import numpy as np

from harness.tasks import modchain


def test_slips_only_multiplications_and_chain_continues_from_written_value():
    p = modchain.make_problem([3, 4, 2, 5], ["*", "+", "*"])  # 3*4+2*5= -> "2,4,0;0"
    assert modchain.slipped_solutions([p], np.random.default_rng(0), 0.0) == ["2,4,0;0"]
    # rate 1: 3*4 = 12 -> 2, written 3; 3+2 = 5; 5*5 = 25 -> 5, written 6
    assert modchain.slipped_solutions([p], np.random.default_rng(0), 1.0) == ["3,5,6;6"]
    q = modchain.make_problem([7, 1, 9], ["+", "-"])  # no multiplication: never slipped
    assert modchain.slipped_solutions([q] * 5, np.random.default_rng(0), 1.0) == [q.solution] * 5


def test_slip_rate_is_the_per_multiplication_probability():
    p = modchain.make_problem([3, 4], ["*"])  # "2;2", slipped "3;3"
    out = modchain.slipped_solutions([p] * 4000, np.random.default_rng(1), 0.6)
    assert set(out) == {"2;2", "3;3"}
    assert abs(out.count("3;3") / 4000 - 0.6) < 0.03
    assert modchain.parse_prompt("4*9+4=") == ([4, 9, 4], ["*", "+"])
