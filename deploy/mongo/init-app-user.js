// Runs once, when the mongo container starts on an empty data volume (/docker-entrypoint-initdb.d):
// the service's own user, readWrite on its database only. The root user is for administration.
const dbName = process.env.MONGO_INITDB_DATABASE || "docproc";
db.getSiblingDB(dbName).createUser({
  user: "docproc",
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "readWrite", db: dbName }],
});
