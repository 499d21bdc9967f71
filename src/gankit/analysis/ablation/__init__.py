"""Generator feature-map ablation and a channel finder (DCGAN paper, section 6.2).

Radford et al. found the G filters that draw windows by fitting a logistic regression to
predict, from the feature maps, whether a location lies inside hand-drawn window boxes; then
they dropped those feature maps and showed the same z before and after: the windows vanished or
turned into other objects. This package does the same for any G whose layers make 4D maps:

- `generator_layers(G)` names the layers that can be ablated (by index, with sizes);
- `ablate(G, layer, channels)` zeroes chosen feature maps inside a `with` block;
- `find_region_channels` ranks channels by how much more they fire inside a region than outside;
- `find_attribute_channels` ranks channels by how they go with an attribute of the image (e.g.
  the domain classifier's p(class)), or causally, by the drop when each is ablated alone;
- `ablation_experiment` runs the whole comparison (chosen channels against the same number of
  randomly chosen channels as a control) and `ablation_figure` draws it;
- `ablate_run` does all of it for a saved run (`gankit ablate`).

One job per module: `layers`, `hooks` (zeroing maps, reading a layer), `finder`,
`experiment`, `figure` and `run`.
"""

from .experiment import FINDER_SEED0, AblationResult, ablation_experiment, summary_lines
from .figure import ablation_figure
from .finder import (
    ChannelScores,
    find_attribute_channels,
    find_region_channels,
    random_channels,
    rect_mask,
)
from .hooks import ablate, render
from .layers import GLayer, format_layers, generator_layers, get_layer
from .run import ablate_run, ablation_lines, parse_int_list, run_layers

__all__ = [
    "FINDER_SEED0",
    "AblationResult",
    "ChannelScores",
    "GLayer",
    "ablate",
    "ablate_run",
    "ablation_experiment",
    "ablation_figure",
    "ablation_lines",
    "find_attribute_channels",
    "find_region_channels",
    "format_layers",
    "generator_layers",
    "get_layer",
    "parse_int_list",
    "random_channels",
    "rect_mask",
    "render",
    "run_layers",
    "summary_lines",
]
