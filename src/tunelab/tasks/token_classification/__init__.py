"""Token classification (named-entity recognition): reading labelled data so far, see ``reading``."""
