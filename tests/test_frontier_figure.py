"""frontier.png reads on its own: the theory lines use the run's depth (a cell's, else the base config's),
the measured groups are told apart, the legend does not cover the data, and the title gives eps."""

import numpy as np

from lightning_grelu.sweeps.frontier import frontier_figure

BASE = {"data.n": 10, "model.depth": 4, "model.lr": 1e-4, "eps": 1e-3, "eps_relative": True, "max_epochs": 1000}


def lines(fig):
    return {ln.get_label(): ln for ln in fig.axes[0].get_lines()}


def test_theory_lines_use_the_base_configs_depth_when_no_cell_sets_it():
    rows = [{"data.n": n, "frontier_width": 3 * n * n, "largest_failing": 2 * n * n} for n in (8, 16, 32)]
    fig = frontier_figure(rows, BASE, "demo")
    got = lines(fig)
    xs = np.array([8.0, 16.0, 32.0])
    assert np.allclose(got["theory m = n^2 L"].get_ydata(), xs ** 2 * 4)  # L = 4, not 1
    assert np.allclose(got["m = nL"].get_ydata(), xs * 4)
    assert not np.allclose(got["(n^2 L)^0.5"].get_ydata(), got["m = nL"].get_ydata())  # no longer hidden under nL
    assert "eps = 0.001 x initial SSE" in fig.axes[0].get_title()


def test_each_cell_depth_gets_its_own_measured_line_and_theory_line():
    rows = [{"data.n": n, "model.depth": d, "frontier_width": n * n * d, "largest_failing": None}
            for d in (2, 4) for n in (8, 16)]
    got = lines(frontier_figure(rows, BASE, "demo"))
    assert {"measured (depth=2)", "measured (depth=4)", "theory m = n^2 L (L=2)", "theory m = n^2 L (L=4)"} <= set(got)
    assert got["measured (depth=2)"].get_color() != got["measured (depth=4)"].get_color()
    assert np.allclose(got["theory m = n^2 L (L=2)"].get_ydata(), [128, 512])


def test_the_legend_sits_beside_the_axes_not_over_the_points():
    rows = [{"data.n": n, "frontier_width": n * n, "largest_failing": None} for n in (8, 16, 32)]
    fig = frontier_figure(rows, BASE, "demo")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    axes = fig.axes[0].get_window_extent(renderer)
    assert legend.x0 >= axes.x1  # entirely to the right of the plotting area


def test_result_curves_tell_depths_apart_and_label_the_switch():
    from lightning_grelu.results.plots import curves_figure, line_styles

    styles = line_styles([4, 7, 4, 10])
    assert len({str(v) for v in styles.values()}) == 3  # depths 4 and 7 no longer share a dash
    fig = curves_figure([("grelu_to_relu", [0, 1, 2, 3], [4.0, 3.0, 2.0, 1.0], {})], "t", "train SSE",
                        vlines=[2], vline_label="GReLU->ReLU switch (epoch 2)")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "GReLU->ReLU switch (epoch 2)" in texts
