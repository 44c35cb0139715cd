-- plugin_bundles: the installed version of each plugin, packed (tar.gz of
-- its folder under the plugins dir: manifest, settings schema, migrations,
-- executables), so that every host node on this database can unpack and
-- run the same version. The plugins row (MAC'd under APP_KEY) still pins
-- the executable's sha256, which every node checks before it launches it;
-- sha256 here is the packed bundle's, checked before it is unpacked.
CREATE TABLE plugin_bundles (
    id         TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    sha256     TEXT   NOT NULL CHECK (length(sha256) = 64),
    size       BIGINT NOT NULL,
    bundle     BLOB  NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
