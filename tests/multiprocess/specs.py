"""The tree that tests/test_multiprocess.py initializes in one process and across several."""

import jinit


def specs(P):
    return {
        "glorot": jinit.ParamSpec((64, 24), jinit.glorot_uniform(), sharding=P("x", None)),
        "normal": jinit.ParamSpec((16, 40), jinit.normal(0.02), sharding=P(None, "x")),
        "orthogonal": jinit.ParamSpec((32, 16), jinit.orthogonal(), sharding=P("x", None)),
        "zeros": jinit.ParamSpec((8,), jinit.zeros, sharding=P("x")),
        "replicated": jinit.ParamSpec((5, 3), jinit.he_normal(), sharding=P()),
    }
