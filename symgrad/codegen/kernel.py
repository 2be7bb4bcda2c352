"""The code generator's entry point: a graph to the C source of one kernel.

``lower`` runs the two stages: ``codegen.lower.to_program`` turns the graph
into the loop IR (``codegen.ir``), ``codegen.render_c.render`` turns the IR
into C. ``locate`` is what the runtime uses to put a failure site's text
(``"<op> at <file>:<line>: "``) into a kernel's error message.
"""

from .lower import MAXDIM, to_program
from .render_c import locate, render

__all__ = ["lower", "locate", "MAXDIM"]


def lower(inputs, outputs, header="", profile=False, steps=None, updates=None,
          donations=None, locations=None, probes=None):
    """C source for a kernel computing ``outputs``; returns (source, leaves, timed).

    ``leaves`` lists the variables whose values the kernel takes, in order
    (function inputs, shared variables, constants). With ``profile``, the
    kernel adds the seconds spent in each step to ``sg_prof[k]``, an
    exported array, and ``timed[k]`` is that step's root node; otherwise
    ``timed`` is empty. A list given as ``steps`` receives the program's
    steps (``codegen.ir``), numbered ``K1``, ``K2``, ... as in the source.

    ``updates`` lists ``(output index, SharedVariable)``: the outputs that are
    updates of shared variables. Those the kernel can write over the
    variable's own memory go into the list given as ``donations``, as
    ``(output index, leaf index)``.

    A list given as ``locations`` receives the text of each failure site, by
    number: the kernel's messages start with a mark holding that number,
    never with the text, and ``header`` is written as a comment.

    A list given as ``probes`` receives the results of every step (but
    updates written in place), which the kernel hands over after
    ``outputs``, each copied right after its step: what mode "debug" compares.
    """
    program = to_program(inputs, outputs, updates or (), probe=probes is not None)
    if probes is not None:
        probes.extend(program.probes)
    source, locs, timed = render(program, header, profile)
    if steps is not None:
        steps.extend(program.all_steps())
    if donations is not None and program.in_place is not None:
        donations.extend((u.out_index, u.leaf) for u in program.in_place.updates)
    if locations is not None:
        locations.extend(locs)
    return source, program.leaves, timed
