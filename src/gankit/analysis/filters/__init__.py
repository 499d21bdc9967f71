"""What D's filters respond to: the DCGAN paper's "opening the black box", for any conv D.

Radford et al. showed that a trained discriminator has learned features (its deep units fire
on parts of objects) where a randomly initialised one has not. Three views make that visible:

* `first_layer_filters`: the weights of D's first convolution as little images.
* `top_activations` + `layer_view`: the real image patches that excite chosen channels of a
  deeper layer most. Each unit sees only its receptive field, found generically from the
  gradient of that one unit with respect to the input (`receptive_field`), so the crop is
  right for any convolutional D, not only for a chain of known kernel sizes and strides.
* guided backpropagation (Springenberg et al. 2015) of the same units: in the backward pass
  every ReLU / LeakyReLU lets through only positive gradients where its input was positive,
  which leaves a sharp picture of the input pattern the unit detects (`unit_gradient`).

`filter_report` runs everything for a saved run and for a randomly initialised D of the same
architecture (the paper's baseline), and writes two figures: trained | random side by side.
Channels default to the `count` with the highest mean top-k activation, chosen separately in
each D (channel numbers of two networks do not correspond).

One job per module: `layers` (D's conv layers), `gradients` (activation rules, unit
gradients, receptive fields), `top` (first-layer filters, top-k activations), `views` (the
patches and guided maps of chosen channels), `figures` and `report` (a saved run).
"""

from .figures import first_layer_figure, layer_figure
from .gradients import RULES, activation_rule, guided_backprop, receptive_field, unit_gradient
from .layers import check_layer, conv_layers, first_conv, layer_shapes
from .report import FilterReport, filter_report, format_report
from .top import (
    TopActivations,
    choose_channels,
    first_layer_filters,
    parse_channels,
    top_activations,
)
from .views import ChannelView, LayerView, UnitView, layer_view

__all__ = [
    "RULES",
    "ChannelView",
    "FilterReport",
    "LayerView",
    "TopActivations",
    "UnitView",
    "activation_rule",
    "check_layer",
    "choose_channels",
    "conv_layers",
    "filter_report",
    "first_conv",
    "first_layer_figure",
    "first_layer_filters",
    "format_report",
    "guided_backprop",
    "layer_figure",
    "layer_shapes",
    "layer_view",
    "parse_channels",
    "receptive_field",
    "top_activations",
    "unit_gradient",
]
