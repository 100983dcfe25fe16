"""The Thought MDP: the Gymnasium env, its spaces, the task interface, prompts and Gym ids."""
