"""DeepSpeed learners: the only package that imports DeepSpeed (lazily, inside the actor)."""
