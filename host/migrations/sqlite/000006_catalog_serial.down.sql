DROP TABLE IF EXISTS catalog_serial;
