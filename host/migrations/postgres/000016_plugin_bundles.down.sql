DROP TABLE plugin_bundles;
