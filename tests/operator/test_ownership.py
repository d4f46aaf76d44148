from modelops_operator import ownership

UID = "11111111-2222-3333-4444-555555555555"


def obj(*refs, managers=()):
    meta = {"name": "cancer", "namespace": "ns", "ownerReferences": list(refs),
            "managedFields": [{"manager": m} for m in managers]}
    return {"kind": "Ingress", "metadata": meta}


def ref(uid=UID, kind="ModelDeployment", name="cancer", controller=True):
    return {"kind": kind, "name": name, "uid": uid, "controller": controller}


def test_an_object_controlled_by_this_modeldeployments_uid_is_ours():
    assert ownership.is_ours(obj(ref()), UID)


def test_an_object_with_no_owner_is_not_ours():
    assert not ownership.is_ours(obj(), UID)


def test_a_same_named_modeldeployment_of_another_uid_does_not_own_it():
    """A ModelDeployment deleted and recreated under the same name is a different owner."""
    assert not ownership.is_ours(obj(ref(uid="other")), UID)


def test_a_non_controller_reference_to_us_is_not_control():
    assert not ownership.is_ours(obj(ref(controller=False)), UID)
    assert not ownership.is_ours(obj(ref(controller=False), ref(uid="x", kind="Application", name="app")), UID)


def test_the_owner_description_names_the_controller_and_the_writers():
    assert ownership.describe_owner(obj(ref(uid="x", kind="Application", name="shop"), managers=["helm"])) == \
        "controlled by Application/shop; written by helm"
    assert ownership.describe_owner(obj(managers=["kubectl-client-side-apply"])) == \
        "no owner; written by kubectl-client-side-apply"
    assert ownership.describe_owner(obj()) == "no owner"


def test_first_foreign_skips_absent_and_own_objects():
    foreign = obj()
    assert ownership.first_foreign([None, obj(ref())], UID) is None
    assert ownership.first_foreign([None, obj(ref()), foreign], UID) is foreign


def test_not_ours_names_the_object_and_its_owner():
    message = str(ownership.NotOurs(obj(managers=["kubectl"])))
    assert message.startswith("Ingress ns/cancer exists and is not controlled by this ModelDeployment")
    assert "no owner; written by kubectl" in message


def test_a_child_of_a_deleted_modeldeployment_of_this_name_is_waited_for_not_a_conflict():
    from modelops_operator.ownership import of_predecessor

    old = {"metadata": {"name": "md", "ownerReferences": [
        {"kind": "ModelDeployment", "name": "md", "uid": "old", "controller": True}]}}
    assert of_predecessor(old, "md", "new")
    assert not of_predecessor(old, "md", "old")  # ours
    other = {"metadata": {"name": "md", "ownerReferences": [
        {"kind": "Deployment", "name": "md", "uid": "x", "controller": True}]}}
    assert not of_predecessor(other, "md", "new")
    assert not of_predecessor({"metadata": {"name": "md"}}, "md", "new")
