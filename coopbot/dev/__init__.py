"""Tools for trying and testing coopbot locally, never used by a running bot: the embedded
default (`coopbot dev`), a throwaway Synapse, a sample recipe, and registry-free images."""
