DROP TABLE plugin_rollout_nodes;
DROP TABLE plugin_rollouts;
