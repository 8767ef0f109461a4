# Versions of the swarm configs this recipe creates: bump one when its file changes (swarm
# configs are immutable, so a changed file needs a new name).
export CONFIG_YAML_VERSION=v1
